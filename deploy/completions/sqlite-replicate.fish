# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_sqlite_replicate_global_optspecs
    string join \n h/help V/version
end

function __fish_sqlite_replicate_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_sqlite_replicate_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_sqlite_replicate_using_subcommand
    set -l cmd (__fish_sqlite_replicate_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -s V -l version -d 'Print version'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "replicate" -d 'Stream databases to their replicas until stopped'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "restore" -d 'Restore a database from a replica'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "reset" -d 'Clear a database\'s local replication state; the next start writes a full image'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "rekey" -d 'Re-encrypt an age-encrypted replica\'s history to the keys the config names now'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "databases" -d 'List the databases in the config'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "ltx" -d 'List the LTX files of a replica, per level'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "version" -d 'Print the version'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "status" -d 'Show each database\'s replication state: local and replicated TXIDs, lag, WAL size'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "check" -d 'Pre-flight check of databases and replicas: what is wrong and what to do'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "verify" -d 'Restore drill: restore into scratch space, check integrity, report RTO and RPO'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "standby" -d 'Warm standby: follow the replica into a local copy; promote on request or when the primary\'s lease expires, then replicate as the new primary'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "promote" -d 'Ask the standby of a database to take over now'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "sync" -d 'Capture a database now through the running replicator\'s control socket; with -wait, return once every replica holds it'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "info" -d 'Show the running replicator\'s version, pid, uptime and database count (control socket)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "list" -d 'List the running replicator\'s databases and their state (control socket)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "start" -d 'Start replicating a database again after `stop` (control socket)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "stop" -d 'Stop replicating one database, after a final sync (control socket)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "register" -d 'Add a database to the running replicator (control socket)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "unregister" -d 'Remove a database from the running replicator, after a final sync (control socket)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "service" -d 'Install or remove the Windows service (Windows only)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand replicate" -l config -d 'Config file (default: $SQLITE_REPLICATE_CONFIG, $LITESTREAM_CONFIG, /etc/sqlite-replicate.yml, /etc/litestream.yml)' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand replicate" -l exec -d 'Run this command as a child; replicate while it runs, then sync and exit with its status' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand replicate" -l log-level -d 'trace|debug|info|warn|error (overrides the config)' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand replicate" -l once -d 'Capture and upload what is there, then exit'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand replicate" -l force-snapshot -d 'With -once: start with a full-database file'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand replicate" -l enforce-retention -d 'With -once: after the sync, delete snapshots past snapshot.retention (and the files they make useless), as Litestream does'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand replicate" -l restore-if-db-not-exists -d 'Restore each database from its replica first if the file does not exist'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand replicate" -l no-expand-env -d 'Do not expand $VAR / ${VAR} in the config file'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand replicate" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -l config -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -s o -d 'Output path (default: the database path)' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -l txid -d 'Restore up to and including this TXID (16 hex digits)' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -l timestamp -d 'Restore the state as of this time (RFC 3339): files created strictly before it' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -l integrity-check -d 'none|quick|full: run SQLite\'s check on the result before putting it in place' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -l parallelism -d 'Ranged reads in flight' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -l replica -d 'Which configured replica to restore from (default: the one with the newest data)' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -l generation -d 'Litestream 0.3 replicas only: the generation to restore (default: the one with the newest file, as 0.3 picks it)' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -l follow-interval -d 'Poll interval in follow mode' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -l log-level -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -l if-db-not-exists -d 'Exit successfully, doing nothing, if the output database already exists'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -l if-replica-exists -d 'Exit successfully, doing nothing, if the replica holds no backup'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -l dry-run -d 'Print the plan (files, levels, TXID ranges, bytes) and do nothing'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -l force -d 'Replace an existing output database and its -wal/-shm'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -l json -d 'Print the plan or result as JSON'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -s f -d 'Follow mode: keep the output current with the replica (read-only copy)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -l no-expand-env
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand restore" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand reset" -l config -d 'Config file (default: as for `replicate`); the database\'s `meta-path` comes from it. Without one, the meta directory is the default beside the database' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand reset" -l no-expand-env -d 'Do not expand $VAR / ${VAR} in the config file'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand reset" -l dry-run -d 'Print what would be removed, remove nothing'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand reset" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand rekey" -l config -d 'Config file (default: as for `replicate`); its `age:` block holds the new keys' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand rekey" -l old-identity-file -d 'A file of retired age identities that can still read older objects (repeatable)' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand rekey" -l replica -d 'Only this replica (its `name`, or its type when it has none)' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand rekey" -l no-expand-env -d 'Do not expand $VAR / ${VAR} in the config file'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand rekey" -l dry-run -d 'List what would be re-encrypted, write nothing'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand rekey" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand databases" -l config -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand databases" -l json
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand databases" -l no-expand-env
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand databases" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand ltx" -l config -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand ltx" -l level -d '0-9 or all' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand ltx" -l replica -d 'Which configured replica (default: the first)' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand ltx" -l json
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand ltx" -l no-expand-env
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand ltx" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand version" -l verbose
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand version" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand status" -l config -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand status" -l json
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand status" -l no-expand-env
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand status" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand check" -l config -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand check" -l wal-warn-size -d 'Warn when a WAL is at least this large (e.g. 100MiB)' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand check" -l wal-fail-size -d 'Fail when a WAL is at least this large (e.g. 1GiB)' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand check" -l skew-warn -d 'Warn when the storage\'s clock is at least this far from ours' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand check" -l skew-fail -d 'Fail when the storage\'s clock is at least this far from ours' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand check" -l replica -d 'Check only this replica of each database' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand check" -l json -d 'Print the findings as JSON'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand check" -l no-quick-check -d 'Skip `PRAGMA quick_check` (it reads the whole database)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand check" -l no-expand-env
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand check" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand verify" -l config -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand verify" -l scratch -d 'Where to create the scratch directory (default: the system\'s temp directory)' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand verify" -l source -d 'The live database to compare with (default: the database\'s path, when it exists)' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand verify" -l replica -d 'Drill only this replica of each database' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand verify" -l parallelism -d 'Ranged reads in flight' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand verify" -l log-level -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand verify" -l json -d 'Print the reports as JSON'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand verify" -l random-point -d 'Also restore a random TXID among those the replica can restore'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand verify" -l no-expand-env
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand verify" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand standby" -l config -d 'Config file (the database\'s entry must have `lease:`)' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand standby" -l follow-interval -d 'How often to poll the replica for new files' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand standby" -l log-level -d 'trace|debug|info|warn|error (overrides the config)' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand standby" -l exec -d 'Start this command once promoted (the database writable, replicating as primary); SIGINT/SIGTERM are forwarded to it; when it exits, final sync, then exit with its status. A lost lease stops it (SIGTERM, SIGKILL after 5 s). Only `-exec` starts a child here: the config\'s top-level `exec` applies to `replicate`, not to `standby`' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand standby" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand promote" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand sync" -l timeout -d 'Seconds to wait' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand sync" -l socket -d 'Control socket path (default: the config\'s socket.path with -config, else /var/run/litestream.sock)' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand sync" -l config -d 'Config file to read socket.path from' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand sync" -l wait -d 'Wait until every replica holds the database\'s current TXID'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand sync" -l json -d 'Print JSON'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand sync" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand info" -l timeout -d 'Seconds to wait' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand info" -l socket -d 'Control socket path (default: the config\'s socket.path with -config, else /var/run/litestream.sock)' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand info" -l config -d 'Config file to read socket.path from' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand info" -l json -d 'Print JSON'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand info" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand list" -l timeout -d 'Seconds to wait' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand list" -l socket -d 'Control socket path (default: the config\'s socket.path with -config, else /var/run/litestream.sock)' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand list" -l config -d 'Config file to read socket.path from' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand list" -l json -d 'Print JSON'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand list" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand start" -l timeout -d 'Seconds to wait' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand start" -l socket -d 'Control socket path (default: the config\'s socket.path with -config, else /var/run/litestream.sock)' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand start" -l config -d 'Config file to read socket.path from' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand start" -l dry-run -d 'Show what would be done (unregister)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand start" -l json -d 'Print JSON'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand start" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand stop" -l timeout -d 'Seconds to wait' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand stop" -l socket -d 'Control socket path (default: the config\'s socket.path with -config, else /var/run/litestream.sock)' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand stop" -l config -d 'Config file to read socket.path from' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand stop" -l dry-run -d 'Show what would be done (unregister)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand stop" -l json -d 'Print JSON'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand stop" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand register" -l replica -d 'Replica URL' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand register" -l timeout -d 'Seconds to wait' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand register" -l socket -d 'Control socket path (default: the config\'s socket.path with -config, else /var/run/litestream.sock)' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand register" -l config -d 'Config file to read socket.path from' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand register" -l json -d 'Print JSON'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand register" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand unregister" -l timeout -d 'Seconds to wait' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand unregister" -l socket -d 'Control socket path (default: the config\'s socket.path with -config, else /var/run/litestream.sock)' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand unregister" -l config -d 'Config file to read socket.path from' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand unregister" -l dry-run -d 'Show what would be done (unregister)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand unregister" -l json -d 'Print JSON'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand unregister" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and not __fish_seen_subcommand_from install uninstall events run help" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and not __fish_seen_subcommand_from install uninstall events run help" -f -a "install" -d 'Register the Windows service (runs `replicate` with the config) and its Event Log source'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and not __fish_seen_subcommand_from install uninstall events run help" -f -a "uninstall" -d 'Stop and remove the Windows service and its Event Log source'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and not __fish_seen_subcommand_from install uninstall events run help" -f -a "events" -d 'Print the service\'s newest Event Log events (type, event ID, message), newest first'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and not __fish_seen_subcommand_from install uninstall events run help" -f -a "run" -d 'What the Service Control Manager starts (not for interactive use)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and not __fish_seen_subcommand_from install uninstall events run help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from install" -l config -d 'Config file the service reads (default: looked up at each start: $SQLITE_REPLICATE_CONFIG, $LITESTREAM_CONFIG, %ProgramData%\\sqlite-replicate\\sqlite-replicate.yml, C:\\Litestream\\litestream.yml)' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from install" -l name -d 'Service name, also the Event Log source' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from install" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from uninstall" -l name -d 'Service name, also the Event Log source' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from uninstall" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from events" -l last -d 'How many of the Application log\'s newest events to look through' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from events" -l name -d 'Service name, also the Event Log source' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from events" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from run" -l config -d 'Config file' -r -F
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from run" -l name -d 'Service name, also the Event Log source' -r
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from run" -s h -l help -d 'Print help'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "install" -d 'Register the Windows service (runs `replicate` with the config) and its Event Log source'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "uninstall" -d 'Stop and remove the Windows service and its Event Log source'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "events" -d 'Print the service\'s newest Event Log events (type, event ID, message), newest first'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "run" -d 'What the Service Control Manager starts (not for interactive use)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand service; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "replicate" -d 'Stream databases to their replicas until stopped'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "restore" -d 'Restore a database from a replica'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "reset" -d 'Clear a database\'s local replication state; the next start writes a full image'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "rekey" -d 'Re-encrypt an age-encrypted replica\'s history to the keys the config names now'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "databases" -d 'List the databases in the config'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "ltx" -d 'List the LTX files of a replica, per level'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "version" -d 'Print the version'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "status" -d 'Show each database\'s replication state: local and replicated TXIDs, lag, WAL size'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "check" -d 'Pre-flight check of databases and replicas: what is wrong and what to do'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "verify" -d 'Restore drill: restore into scratch space, check integrity, report RTO and RPO'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "standby" -d 'Warm standby: follow the replica into a local copy; promote on request or when the primary\'s lease expires, then replicate as the new primary'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "promote" -d 'Ask the standby of a database to take over now'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "sync" -d 'Capture a database now through the running replicator\'s control socket; with -wait, return once every replica holds it'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "info" -d 'Show the running replicator\'s version, pid, uptime and database count (control socket)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "list" -d 'List the running replicator\'s databases and their state (control socket)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "start" -d 'Start replicating a database again after `stop` (control socket)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "stop" -d 'Stop replicating one database, after a final sync (control socket)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "register" -d 'Add a database to the running replicator (control socket)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "unregister" -d 'Remove a database from the running replicator, after a final sync (control socket)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "service" -d 'Install or remove the Windows service (Windows only)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and not __fish_seen_subcommand_from replicate restore reset rekey databases ltx version status check verify standby promote sync info list start stop register unregister service help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "install" -d 'Register the Windows service (runs `replicate` with the config) and its Event Log source'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "uninstall" -d 'Stop and remove the Windows service and its Event Log source'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "events" -d 'Print the service\'s newest Event Log events (type, event ID, message), newest first'
complete -c sqlite-replicate -n "__fish_sqlite_replicate_using_subcommand help; and __fish_seen_subcommand_from service" -f -a "run" -d 'What the Service Control Manager starts (not for interactive use)'
