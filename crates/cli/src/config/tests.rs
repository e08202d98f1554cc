//! Whole-file tests of `parse`/`load`: the forms users have (Litestream 0.5 examples, the
//! older top-level-credentials style, the bench harness), and every error with its exact
//! message.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn ok(yaml: &str) -> Config {
    match parse(yaml, false, &no_env) {
        Ok(c) => c,
        Err(e) => panic!("{yaml}\n=> {e}"),
    }
}

fn err(yaml: &str) -> String {
    match parse(yaml, false, &no_env) {
        Ok(c) => panic!("{yaml}\n=> accepted: {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn s3(r: &ReplicaConfig) -> &S3Config {
    match &r.kind {
        ReplicaKind::S3(c) => c,
        other => panic!("not s3: {other:?}"),
    }
}

const S: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn litestream_05_single_replica_url() {
    let cfg =
        ok("dbs:\n  - path: /var/lib/app/app.db\n    replica:\n      url: s3://my-bucket/app\n");
    assert_eq!(cfg.dbs.len(), 1);
    let db = &cfg.dbs[0];
    assert_eq!(
        db.source,
        DbSource::Path(PathBuf::from("/var/lib/app/app.db"))
    );
    assert_eq!(db.replicas.len(), 1);
    let r = &db.replicas[0];
    assert_eq!(r.display_name(), "s3");
    assert_eq!(r.url.as_deref(), Some("s3://my-bucket/app"));
    let c = s3(r);
    assert_eq!((c.bucket.as_str(), c.path.as_str()), ("my-bucket", "app"));
    assert_eq!(
        (
            c.endpoint.as_deref(),
            c.region.as_deref(),
            c.force_path_style
        ),
        (None, None, false)
    );
    assert_eq!(c.sign_payload, None);
}

#[test]
fn defaults_are_litestreams() {
    let cfg = ok("dbs:\n  - path: /a.db\n    replica:\n      path: /backups/a\n");
    assert_eq!(cfg.levels, vec![S(30), S(300), S(3600)]);
    assert_eq!(
        cfg.snapshot,
        SnapshotConfig {
            interval: S(86400),
            retention: S(86400)
        }
    );
    assert_eq!(
        (cfg.l0_retention, cfg.l0_retention_check_interval),
        (S(300), S(15))
    );
    assert!(cfg.retention_enabled);
    assert_eq!(cfg.shutdown_sync_timeout, S(30));
    assert_eq!(
        cfg.logging,
        LoggingConfig {
            level: LogLevel::Info,
            json: false,
            stdout: false,
            source: false,
        }
    );
    assert_eq!(cfg.socket.permissions, 0o600);
    assert!(!cfg.socket.enabled);
    assert_eq!(cfg.socket.path, PathBuf::from("/var/run/litestream.sock"));
    assert_eq!(
        (cfg.addr.as_deref(), cfg.health_failing_after),
        (None, S(60))
    );
    assert!(cfg.warnings.is_empty());

    let db = &cfg.dbs[0];
    assert_eq!(db.meta_path, None);
    assert_eq!(db.monitor_interval, None);
    assert_eq!((db.checkpoint_interval, db.busy_timeout), (S(60), S(1)));
    assert_eq!(db.min_checkpoint_page_count, 1000);
    assert!(!db.restore_if_db_not_exists);
    assert_eq!(db.snapshot, None);

    let r = &db.replicas[0];
    assert_eq!(
        r.kind,
        ReplicaKind::File {
            path: PathBuf::from("/backups/a")
        }
    );
    assert_eq!(r.display_name(), "file");
    assert_eq!(
        (r.sync_interval, r.snapshot_interval, r.retention),
        (None, None, None)
    );
    assert!(!r.legacy_page_encoding);
}

#[test]
fn older_style_with_top_level_credentials() {
    let yaml = "\
access-key-id: minioadmin
secret-access-key: minioadmin
dbs:
  - path: /var/lib/app/database.db
    replicas:
      - name: minio
        type: s3
        bucket: clojure-db-replica
        path: database
        endpoint: http://127.0.0.1:9000
        force-path-style: true
        snapshot-interval: 1h
        retention: 24h
";
    let cfg = ok(yaml);
    let r = &cfg.dbs[0].replicas[0];
    assert_eq!(r.display_name(), "minio");
    assert_eq!(
        (r.snapshot_interval, r.retention),
        (Some(S(3600)), Some(S(86400)))
    );
    let c = s3(r);
    assert_eq!(c.bucket, "clojure-db-replica");
    assert_eq!(c.path, "database");
    assert_eq!(c.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    assert!(c.force_path_style);
    assert_eq!(
        c.access_key_id.as_ref().map(Secret::expose),
        Some("minioadmin")
    );
    assert_eq!(
        c.secret_access_key.as_ref().map(Secret::expose),
        Some("minioadmin")
    );
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);

    // Secrets never reach Debug output, wherever they came from.
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("minioadmin"), "{dbg}");
    assert!(dbg.contains("access_key_id: Some(***)"), "{dbg}");
}

#[test]
fn per_replica_values_override_top_level_defaults() {
    let cfg = ok("\
region: us-east-1
endpoint: https://global.example
sync-interval: 5s
access-key-id: global-id
dbs:
  - path: /a.db
    replicas:
      - url: s3://b/a?region=from-url
        sync-interval: 1s
      - name: other
        type: s3
        bucket: b2
        endpoint: https://own.example
        access-key-id: own-id
");
    let rs = &cfg.dbs[0].replicas;
    let (a, b) = (s3(&rs[0]), s3(&rs[1]));
    assert_eq!(
        (a.region.as_deref(), a.endpoint.as_deref()),
        (Some("from-url"), Some("https://global.example"))
    );
    assert_eq!(rs[0].sync_interval, Some(S(1)));
    assert_eq!(
        a.access_key_id.as_ref().map(Secret::expose),
        Some("global-id")
    );
    assert_eq!(
        (b.region.as_deref(), b.endpoint.as_deref()),
        (Some("us-east-1"), Some("https://own.example"))
    );
    assert_eq!(rs[1].sync_interval, Some(S(5)));
    assert_eq!(b.access_key_id.as_ref().map(Secret::expose), Some("own-id"));
    assert!(
        a.force_path_style && b.force_path_style,
        "an endpoint implies path style"
    );
}

#[test]
fn bench_harness_forms() {
    let cfg = ok("dbs:\n  - path: /tmp/bench/app.db\n    replicas:\n      - type: file\n        path: /tmp/bench/replica\n");
    assert_eq!(
        cfg.dbs[0].replicas[0].kind,
        ReplicaKind::File {
            path: PathBuf::from("/tmp/bench/replica")
        }
    );

    let cfg = ok("\
dbs:
  - path: /tmp/bench/app.db
    replicas:
      - type: s3
        bucket: bench
        path: db
        endpoint: http://127.0.0.1:3900
        region: garage
        force-path-style: true
        access-key-id: GK123
        secret-access-key: s3cr3t
        sync-interval: 1s
");
    let c = s3(&cfg.dbs[0].replicas[0]);
    assert_eq!(
        (c.bucket.as_str(), c.path.as_str(), c.region.as_deref()),
        ("bench", "db", Some("garage"))
    );
    assert_eq!(
        c.secret_access_key.as_ref().map(Secret::expose),
        Some("s3cr3t")
    );
}

#[test]
fn several_replicas_on_one_database() {
    let cfg = ok("\
dbs:
  - path: /var/lib/app/app.db
    replicas:
      - name: near
        type: file
        path: /backups/app
      - name: far
        url: file:///mnt/disk2/app
        sync-interval: 200ms
        page-encoding: legacy
      - url: s3://bucket/app
");
    let rs = &cfg.dbs[0].replicas;
    let names: Vec<&str> = rs.iter().map(ReplicaConfig::display_name).collect();
    assert_eq!(names, ["near", "far", "s3"]);
    assert_eq!(
        rs[1].kind,
        ReplicaKind::File {
            path: PathBuf::from("/mnt/disk2/app")
        }
    );
    assert_eq!(rs[1].sync_interval, Some(Duration::from_millis(200)));
    assert!(rs[1].legacy_page_encoding && !rs[0].legacy_page_encoding);
}

#[test]
fn all_database_and_top_level_keys() {
    let cfg = ok("\
addr: ':9090'
health-failing-after: 90s
exec: java -jar app.jar
levels:
  - interval: 10s
  - interval: 2m
snapshot:
  interval: 12h
  retention: 72h
l0-retention: 0
l0-retention-check-interval: 30s
retention:
  enabled: false
shutdown-sync-timeout: 0
logging:
  level: DEBUG
  type: json
dbs:
  - path: ~/app.db
    meta-path: /var/lib/meta/app
    monitor-interval: 250ms
    checkpoint-interval: 5m
    busy-timeout: 5s
    min-checkpoint-page-count: 2000
    restore-if-db-not-exists: true
    snapshot:
      interval: 1h
    replica:
      path: /b
");
    assert_eq!(
        (cfg.addr.as_deref(), cfg.exec.as_deref()),
        (Some(":9090"), Some("java -jar app.jar"))
    );
    assert_eq!(cfg.health_failing_after, S(90));
    assert_eq!(cfg.levels, vec![S(10), S(120)]);
    assert_eq!(
        cfg.snapshot,
        SnapshotConfig {
            interval: S(12 * 3600),
            retention: S(72 * 3600)
        }
    );
    assert_eq!(
        (cfg.l0_retention, cfg.l0_retention_check_interval),
        (Duration::ZERO, S(30))
    );
    assert!(!cfg.retention_enabled);
    assert_eq!(cfg.shutdown_sync_timeout, Duration::ZERO);
    assert_eq!(
        cfg.logging,
        LoggingConfig {
            level: LogLevel::Debug,
            json: true,
            stdout: false,
            source: false,
        }
    );
    let db = &cfg.dbs[0];
    assert!(matches!(&db.source, DbSource::Path(p) if p.ends_with("app.db") && p.is_absolute()));
    assert_eq!(db.meta_path, Some(PathBuf::from("/var/lib/meta/app")));
    assert_eq!(
        (db.monitor_interval, db.checkpoint_interval, db.busy_timeout),
        (Some(Duration::from_millis(250)), S(300), S(5))
    );
    assert_eq!(db.min_checkpoint_page_count, 2000);
    assert!(db.restore_if_db_not_exists);
    assert_eq!(
        db.snapshot,
        Some(SnapshotConfig {
            interval: S(3600),
            retention: S(72 * 3600)
        })
    );
}

#[test]
fn directory_entries() {
    let cfg = ok("dbs:\n  - dir: /data/tenants\n    pattern: 'tenant-*.db'\n    recursive: true\n    watch: false\n    replica:\n      url: s3://b/tenants\n");
    assert_eq!(
        cfg.dbs[0].source,
        DbSource::Dir {
            dir: PathBuf::from("/data/tenants"),
            pattern: "tenant-*.db".into(),
            recursive: true,
            watch: false,
        }
    );
    let cfg = ok("dbs:\n  - dir: /data\n    pattern: '*.db'\n    watch: true\n    replica:\n      path: /b\n");
    assert!(matches!(
        cfg.dbs[0].source,
        DbSource::Dir { watch: true, .. }
    ));
    assert_eq!(
        err("dbs:\n  - dir: /data\n    pattern: '*.db'\n    watch: true\n    lease: {}\n    replica:\n      path: /b\n"),
        "dbs[0].watch: `watch: true` cannot be combined with `lease:` (databases found while replicating would not take the lease); remove one"
    );
}

#[test]
fn env_expansion_both_spellings_and_disabled() {
    let env = |k: &str| match k {
        "BUCKET" => Some("env-bucket".to_string()),
        "DB_DIR" => Some("/srv/data".to_string()),
        "SECRET" => Some("pa$$word".to_string()),
        _ => None,
    };
    let yaml = "dbs:\n  - path: ${DB_DIR}/app.db\n    replica:\n      url: s3://$BUCKET/app\n      secret-access-key: $SECRET\n      access-key-id: $UNSET\n";
    let cfg = parse(yaml, true, &env).unwrap();
    assert_eq!(
        cfg.dbs[0].source,
        DbSource::Path(PathBuf::from("/srv/data/app.db"))
    );
    let c = s3(&cfg.dbs[0].replicas[0]);
    assert_eq!(c.bucket, "env-bucket");
    assert_eq!(
        c.secret_access_key.as_ref().map(Secret::expose),
        Some("pa$$word"),
        "values are not expanded twice"
    );
    assert_eq!(
        c.access_key_id, None,
        "an unset variable is empty, so absent"
    );

    let cfg = parse(
        "dbs:\n  - path: /a.db\n    replica:\n      url: s3://$BUCKET/app\n",
        false,
        &env,
    )
    .unwrap();
    assert_eq!(s3(&cfg.dbs[0].replicas[0]).bucket, "$BUCKET");
}

#[test]
fn expanded_values_cannot_change_the_document() {
    // Security issue 17: expansion ran on the raw text, so a newline in a value added keys
    // and ` #` cut the value short.
    let env = |k: &str| match k {
        "FOO" => Some("x\nbucket: evil".to_string()),
        "HASH" => Some("a #b".to_string()),
        "QUOTE" => Some("it's \"quoted\"".to_string()),
        "SI" => Some("15s".to_string()),
        "SV" => Some("true".to_string()),
        "N" => Some("12".to_string()),
        _ => None,
    };
    let yaml = "dbs:\n  - path: /a.db\n    min-checkpoint-page-count: $N\n    replica:\n      type: s3\n      bucket: good\n      path: $FOO\n      secret-access-key: $HASH\n      access-key-id: ${QUOTE}\n      sync-interval: ${SI}\n      skip-verify: $SV\n";
    let cfg = parse(yaml, true, &env).unwrap();
    let r = &cfg.dbs[0].replicas[0];
    let c = s3(r);
    assert_eq!(c.bucket, "good", "no key injected");
    assert_eq!(c.path, "x\nbucket: evil", "the newline stays in the value");
    assert_eq!(
        c.secret_access_key.as_ref().map(Secret::expose),
        Some("a #b"),
        "` #` is not a comment"
    );
    assert_eq!(
        c.access_key_id.as_ref().map(Secret::expose),
        Some("it's \"quoted\"")
    );
    // Typed keys still take their value from a variable.
    assert_eq!(r.sync_interval, Some(Duration::from_secs(15)));
    assert!(c.skip_verify);
    assert_eq!(cfg.dbs[0].min_checkpoint_page_count, 12);

    // A variable never makes a mapping or a list, and comments are not expanded.
    let e = err_env("dbs: $FOO\n", &env);
    assert!(e.starts_with("dbs:"), "{e}");
    parse("# ${ unclosed in a comment\ndbs: []\n", true, &env).unwrap();
    let e = err_env("dbs:\n  - path: /a${\n", &env);
    assert!(e.starts_with("dbs[0].path: environment expansion"), "{e}");
}

fn err_env(yaml: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    parse(yaml, true, env).unwrap_err().to_string()
}

#[test]
fn webdav_replicas_take_litestreams_keys_and_urls() {
    let kind = |replica: &str| {
        let cfg = ok(&format!("dbs:\n  - path: /a.db\n    replica:\n{replica}"));
        let ReplicaKind::WebDav(c) = cfg.dbs[0].replicas[0].kind.clone() else {
            panic!("not webdav")
        };
        assert!(!format!("{cfg:?}").contains("pw-"), "password in Debug");
        (c, cfg.dbs[0].replicas[0].kind.describe())
    };
    // Litestream's keys.
    let (c, shown) = kind("      type: webdav\n      webdav-url: https://dav.example/remote.php\n      webdav-username: bob\n      webdav-password: pw-1\n      path: /backups/app\n");
    assert_eq!(
        (c.url.as_str(), c.username.as_deref(), c.path.as_str()),
        (
            "https://dav.example/remote.php",
            Some("bob"),
            "/backups/app"
        )
    );
    assert_eq!(c.password.as_ref().map(Secret::expose), Some("pw-1"));
    assert_eq!(shown, "webdavs://dav.example/remote.php/backups/app");
    // The URL: webdav:// is http, webdavs:// https, the login from the userinfo.
    let (c, shown) = kind("      url: 'webdav://bob:pw-2@127.0.0.1:8080/db/app'\n");
    assert_eq!(
        (c.url.as_str(), c.username.as_deref(), c.path.as_str()),
        ("http://127.0.0.1:8080", Some("bob"), "/db/app")
    );
    assert_eq!(c.password.as_ref().map(Secret::expose), Some("pw-2"));
    assert_eq!(shown, "webdav://127.0.0.1:8080/db/app");
    let (c, _) = kind("      url: webdavs://h/p\n      webdav-password: pw-3\n");
    assert_eq!((c.url.as_str(), c.username), ("https://h", None));
    // A top-level default applies to webdav replicas only.
    let cfg = ok("webdav-username: top\ndbs:\n  - path: /a.db\n    replicas:\n      - url: webdav://h/p\n      - path: /b\n");
    let ReplicaKind::WebDav(c) = &cfg.dbs[0].replicas[0].kind else {
        panic!("not webdav")
    };
    assert_eq!(c.username.as_deref(), Some("top"));
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    // The CLI's bare URL.
    let ReplicaKind::WebDav(c) =
        super::for_url("/a.db", "webdavs://u:pw-4@h:8443/x", &|_: &str| None)
            .unwrap()
            .dbs[0]
            .replicas[0]
            .kind
            .clone()
    else {
        panic!("not webdav")
    };
    assert_eq!((c.url.as_str(), c.path.as_str()), ("https://h:8443", "/x"));
}

#[test]
fn oss_replicas_are_s3_with_oss_addressing() {
    let kind = |replica: &str, env: &dyn Fn(&str) -> Option<String>| {
        let cfg = parse(
            &format!("dbs:\n  - path: /a.db\n    replica:\n{replica}"),
            false,
            env,
        )
        .unwrap();
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        let ReplicaKind::S3(c) = cfg.dbs[0].replicas[0].kind.clone() else {
            panic!("not s3")
        };
        (c, cfg.dbs[0].replicas[0].display_name().to_string())
    };
    // Litestream's URL: bucket and region from the host, the public endpoint, virtual-hosted.
    let (c, name) = kind(
        "      url: oss://logs.oss-cn-shanghai.aliyuncs.com/db/app\n",
        &no_env,
    );
    assert!(c.oss && !c.force_path_style);
    assert_eq!(name, "oss");
    assert_eq!(
        (
            c.bucket.as_str(),
            c.path.as_str(),
            c.region.as_deref(),
            c.endpoint.as_deref()
        ),
        (
            "logs",
            "db/app",
            Some("cn-shanghai"),
            Some("https://oss-cn-shanghai.aliyuncs.com")
        )
    );
    let (c, _) = kind(
        "      url: oss://b.oss-cn-beijing-internal.aliyuncs.com/p\n",
        &no_env,
    );
    assert_eq!(
        (c.bucket.as_str(), c.region.as_deref()),
        ("b", Some("cn-beijing"))
    );
    // Litestream's keys; region cn-hangzhou by default; keys from OSS_* (not AWS_*).
    let env = |k: &str| match k {
        "OSS_ACCESS_KEY_ID" => Some("oss-id".to_string()),
        "OSS_ACCESS_KEY_SECRET" => Some("oss-secret".to_string()),
        "AWS_ACCESS_KEY_ID" => Some("aws-id".to_string()),
        _ => None,
    };
    let (c, _) = kind(
        "      type: oss\n      bucket: b\n      path: /x/\n      part-size: 5MB\n",
        &env,
    );
    assert_eq!(
        (
            c.path.as_str(),
            c.region.as_deref(),
            c.endpoint.as_deref(),
            c.part_size
        ),
        (
            "x",
            Some("cn-hangzhou"),
            Some("https://oss-cn-hangzhou.aliyuncs.com"),
            Some(5_000_000)
        )
    );
    assert_eq!(c.access_key_id.as_ref().map(Secret::expose), Some("oss-id"));
    assert_eq!(
        c.secret_access_key.as_ref().map(Secret::expose),
        Some("oss-secret")
    );
    let (c, _) = kind("      type: oss\n      bucket: b\n      endpoint: oss-eu-central-1.aliyuncs.com\n      region: eu-central-1\n", &no_env);
    assert_eq!(
        c.endpoint.as_deref(),
        Some("https://oss-eu-central-1.aliyuncs.com")
    );
    // S3-only keys do not apply.
    let cfg = ok(
        "dbs:\n  - path: /a.db\n    replica:\n      url: oss://b/p\n      force-path-style: true\n",
    );
    assert!(
        cfg.warnings[0].contains("`force-path-style` does not apply to a oss replica"),
        "{:?}",
        cfg.warnings
    );
    assert_eq!(
        parse_replica_url("oss://b.oss-cn-hangzhou.aliyuncs.com/db")
            .unwrap()
            .describe(),
        "oss://b/db (endpoint https://oss-cn-hangzhou.aliyuncs.com)"
    );
}

#[test]
fn sftp_key_passphrase_is_its_own_secret() {
    let cfg = ok("dbs:\n  - path: /a.db\n    replica:\n      url: 'sftp://bob:login-pw@h/p'\n      key-path: /k\n      key-passphrase: key-pw\n");
    let ReplicaKind::Sftp(c) = &cfg.dbs[0].replicas[0].kind else {
        panic!("not sftp")
    };
    assert_eq!(c.password.as_ref().map(Secret::expose), Some("login-pw"));
    assert_eq!(
        c.key_passphrase.as_ref().map(Secret::expose),
        Some("key-pw")
    );
    assert!(!format!("{cfg:?}").contains("key-pw"));
    let cfg =
        ok("dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/p\n      key-passphrase: x\n");
    assert!(
        cfg.warnings
            .iter()
            .any(|w| w.contains("`key-passphrase` does not apply")),
        "{:?}",
        cfg.warnings
    );
}

#[test]
fn credentials_and_endpoint_from_the_environment() {
    let yaml = "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n";
    // (environment, then the access key id, secret and endpoint it gives)
    type Want<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>);
    let cases: Vec<(Vec<(&str, &str)>, Want)> = vec![
        (vec![], (None, None, None)),
        (
            vec![
                ("AWS_ACCESS_KEY_ID", "aws-id"),
                ("AWS_SECRET_ACCESS_KEY", "aws-secret"),
            ],
            (Some("aws-id"), Some("aws-secret"), None),
        ),
        (
            vec![
                ("LITESTREAM_ACCESS_KEY_ID", "ls-id"),
                ("LITESTREAM_SECRET_ACCESS_KEY", "ls-secret"),
            ],
            (Some("ls-id"), Some("ls-secret"), None),
        ),
        (
            vec![
                ("AWS_ACCESS_KEY_ID", "aws-id"),
                ("LITESTREAM_ACCESS_KEY_ID", "ls-id"),
                ("LITESTREAM_S3_ENDPOINT", "localhost:9000"),
            ],
            (Some("aws-id"), None, Some("http://localhost:9000")),
        ),
    ];
    for (vars, (id, secret, endpoint)) in cases {
        let env = |k: &str| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        let cfg = parse(yaml, false, &env).unwrap();
        let c = s3(&cfg.dbs[0].replicas[0]);
        assert_eq!(c.access_key_id.as_ref().map(Secret::expose), id, "{vars:?}");
        assert_eq!(
            c.secret_access_key.as_ref().map(Secret::expose),
            secret,
            "{vars:?}"
        );
        assert_eq!(c.endpoint.as_deref(), endpoint, "{vars:?}");
        assert_eq!(c.force_path_style, endpoint.is_some());
    }
    // Config values win over the environment.
    let env = |k: &str| (k == "AWS_ACCESS_KEY_ID").then(|| "aws-id".to_string());
    let cfg = parse(
        "access-key-id: cfg-id\ndbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n",
        false,
        &env,
    )
    .unwrap();
    assert_eq!(
        s3(&cfg.dbs[0].replicas[0])
            .access_key_id
            .as_ref()
            .map(Secret::expose),
        Some("cfg-id")
    );
}

#[test]
fn log_level_env_overrides_the_file() {
    let yaml = "logging:\n  level: warn\n";
    let cases: &[(Option<&str>, LogLevel)] = &[
        (None, LogLevel::Warn),
        (Some(""), LogLevel::Warn),
        (Some("debug"), LogLevel::Debug),
        (Some("ERROR"), LogLevel::Error),
    ];
    for (var, want) in cases {
        let env = |k: &str| {
            if k == "LOG_LEVEL" {
                var.map(str::to_string)
            } else {
                None
            }
        };
        assert_eq!(
            parse(yaml, false, &env).unwrap().logging.level,
            *want,
            "{var:?}"
        );
    }
    let env = |k: &str| (k == "LOG_LEVEL").then(|| "loud".to_string());
    assert_eq!(
        parse(yaml, false, &env).unwrap_err().to_string(),
        r#"$LOG_LEVEL: "loud" is not a log level (trace, debug, info, warn, error)"#
    );
}

#[test]
fn replica_types_from_urls_and_keys() {
    let cases: &[(&str, &str)] = &[
        ("url: s3://b/p", "s3"),
        ("url: gs://b/p", "gs"),
        ("url: abs://acct@c/p", "abs"),
        ("url: sftp://u@h/p", "sftp"),
        ("url: file:///p", "file"),
        ("url: /p", "file"),
        ("path: /p", "file"),
        ("type: gs\n      bucket: b", "gs"),
        ("type: abs\n      bucket: c\n      account-name: a", "abs"),
        (
            "type: sftp\n      host: h:22\n      user: u\n      path: /p",
            "sftp",
        ),
        ("type: S3\n      bucket: b", "s3"),
    ];
    for (replica, want) in cases {
        let cfg = ok(&format!(
            "dbs:\n  - path: /a.db\n    replica:\n      {replica}\n"
        ));
        assert_eq!(cfg.dbs[0].replicas[0].kind.type_name(), *want, "{replica}");
    }
}

#[test]
fn parse_replica_url_forms() {
    let cases: &[(&str, ReplicaKind)] = &[
        ("file:///backups/app", ReplicaKind::File { path: PathBuf::from("/backups/app") }),
        ("/backups/app/", ReplicaKind::File { path: PathBuf::from("/backups/app") }),
        ("relative/dir", ReplicaKind::File { path: PathBuf::from("relative/dir") }),
        // A directory whose name looks like a scheme, said to be a path (issue 25).
        ("./gs:/x", ReplicaKind::File { path: PathBuf::from("gs:/x") }),
        ("s3://bucket/prefix/db", ReplicaKind::S3(S3Config { bucket: "bucket".into(), path: "prefix/db".into(), ..Default::default() })),
        ("s3://bucket", ReplicaKind::S3(S3Config { bucket: "bucket".into(), ..Default::default() })),
        (
            "s3://bucket/db?endpoint=localhost:9000&region=auto&skipVerify=true&sign-payload=false&requireContentMD5=false&concurrency=4&partSize=5MiB&storage-class=STANDARD_IA",
            ReplicaKind::S3(S3Config {
                bucket: "bucket".into(),
                path: "db".into(),
                endpoint: Some("http://localhost:9000".into()),
                region: Some("auto".into()),
                force_path_style: true,
                skip_verify: true,
                sign_payload: Some(false),
                require_content_md5: Some(false),
                concurrency: Some(4),
                part_size: Some(5 << 20),
                storage_class: Some("STANDARD_IA".into()),
                ..Default::default()
            }),
        ),
        (
            "s3://bucket/db?endpoint=https://e.example&forcePathStyle=false",
            ReplicaKind::S3(S3Config {
                bucket: "bucket".into(),
                path: "db".into(),
                endpoint: Some("https://e.example".into()),
                ..Default::default()
            }),
        ),
        (
            "s3://bkt.s3.eu-west-1.amazonaws.com/db",
            ReplicaKind::S3(S3Config { bucket: "bkt".into(), path: "db".into(), region: Some("eu-west-1".into()), ..Default::default() }),
        ),
        ("gs://bucket/path/x", ReplicaKind::Gcs(GcsConfig { bucket: "bucket".into(), path: "path/x".into() })),
        ("nats://h.example:4222/bkt", ReplicaKind::Nats(NatsConfig { server: Some("nats://h.example:4222".into()), bucket: "bkt".into(), ..Default::default() })),
        (
            "nats://bob:p%40ss@h/bkt/db/app",
            ReplicaKind::Nats(NatsConfig {
                server: Some("nats://h".into()),
                bucket: "bkt".into(),
                path: "db/app".into(),
                username: Some("bob".into()),
                password: Some(Secret::new("p@ss")),
                ..Default::default()
            }),
        ),
        (
            "abs://acct@container/p",
            ReplicaKind::Abs(AbsConfig { account_name: Some("acct".into()), bucket: "container".into(), path: "p".into(), ..Default::default() }),
        ),
        ("abs://container/p", ReplicaKind::Abs(AbsConfig { bucket: "container".into(), path: "p".into(), ..Default::default() })),
        (
            "sftp://bob:hunter2@host:2222/srv/backups",
            ReplicaKind::Sftp(SftpConfig {
                host: "host:2222".into(),
                user: "bob".into(),
                password: Some(Secret::new("hunter2")),
                path: "/srv/backups".into(),
                ..Default::default()
            }),
        ),
    ];
    for (url, want) in cases {
        assert_eq!(parse_replica_url(url).unwrap(), *want, "{url}");
    }
}

#[test]
fn parse_replica_url_errors() {
    let cases: &[(&str, &str)] = &[
        ("s3://bucket/db?bogus=1", "invalid replica URL \"s3://bucket/db?bogus=1\": unknown query parameter \"bogus\" (endpoint, region, forcePathStyle, skipVerify, signPayload, requireContentMD5, concurrency, partSize, storageClass)"),
        ("s3://bucket/db?forcePathStyle=maybe", "invalid replica URL \"s3://bucket/db?forcePathStyle=maybe\": forcePathStyle=\"maybe\" is not true or false"),
        ("sftp://host/p", "invalid replica URL \"sftp://host/p\": a sftp replica needs a user: `user:` or `url: sftp://USER@HOST/path`"),
        ("gs://b/p?x=y", "invalid replica URL \"gs://b/p?x=y\": a gs URL takes no query parameters"),
        ("webdav://h/p?x=1", "invalid replica URL \"webdav://h/p?x=1\": a webdav URL takes no query parameters"),
        ("nats://h:4222", "invalid replica URL \"nats://h:4222\": a nats replica needs a bucket: `bucket:` or `url: nats://HOST:PORT/BUCKET`"),
        ("nats://bob:hunter2@h/b.c", "invalid replica URL \"nats://bob:***@h/b.c\": \"b.c\" is not an object store bucket name (letters, digits, `_`, `-`)"),
        ("s3://localhost:9000/db", "invalid replica URL \"s3://localhost:9000/db\": a s3 replica needs a bucket: `bucket:` or `url: s3://BUCKET/path`"),
        ("gs:/bad", "invalid replica URL \"gs:/bad\": the scheme is malformed: write gs://bad (for a local directory of that name, write ./gs:/bad)"),
        ("file:/x/y", "invalid replica URL \"file:/x/y\": the scheme is malformed: write file:///x/y (for a local directory of that name, write ./file:/x/y)"),
        ("S3:b/p", "invalid replica URL \"S3:b/p\": the scheme is malformed: write S3://b/p (for a local directory of that name, write ./S3:b/p)"),
    ];
    for (url, want) in cases {
        assert_eq!(
            parse_replica_url(url).unwrap_err().to_string(),
            *want,
            "{url}"
        );
    }
}

/// Every error a config can produce, with its exact message.
#[test]
fn errors_name_the_key_and_the_value() {
    const DB: &str = "dbs:\n  - path: /a.db\n";
    let cases: Vec<(String, &str)> = vec![
        // Unknown keys, with suggestions and hints, at every level.
        (
            format!("{DB}    replica:\n      path: /b\n      sync_interval: 1s\n"),
            r#"dbs[0].replica: unknown key "sync_interval" (did you mean "sync-interval"?)"#,
        ),
        ("dbz:\n  - path: /a.db\n".into(), r#"unknown key "dbz" (did you mean "dbs"?)"#),
        ("path: /a.db\n".into(), r#"unknown key "path" (it is a database key: put it in an entry of `dbs:`)"#),
        (format!("{DB}    bucket: b\n    replica:\n      path: /b\n"), r#"dbs[0]: unknown key "bucket" (it is a replica key: put it under `replica:`)"#),
        (
            format!("{DB}    replica:\n      path: /b\n      checkpoint-interval: 1m\n"),
            r#"dbs[0].replica: unknown key "checkpoint-interval" (it is a database key: move it up one level, next to `path`)"#,
        ),
        (format!("{DB}    replica:\n      path: /b\nlogging:\n  format: json\n"), r#"logging: unknown key "format""#),
        ("snapshot:\n  intervals: 1h\n".into(), r#"snapshot: unknown key "intervals" (did you mean "interval"?)"#),
        (
            "dbs:\n  - directory: /data\n    pattern: '*.db'\n    replica: {path: /b}\n".into(),
            r#"dbs[0]: unknown key "directory" (did you mean "dir"?)"#,
        ),
        (format!("{DB}    sync-interval: 1s\n    replica:\n      path: /b\n"), r#"dbs[0]: unknown key "sync-interval" (it is a replica key: put it under `replica:`)"#),
        (format!("{DB}    creds: /n.creds\n    replica:\n      path: /b\n"), r#"dbs[0]: unknown key "creds" (it is a replica key: put it under `replica:`)"#),
        // Wrong types and bad values.
        (
            "dbs:\n  - path: /a.db\n    replica: {path: /b}\n  - path: /c.db\n    checkpoint-interval: 5 minutes\n    replica: {path: /d}\n".into(),
            r#"dbs[1].checkpoint-interval: "5 minutes" is not a duration (e.g. 1m30s): unknown unit " minutes" (ns, us, ms, s, m, h)"#,
        ),
        (
            format!("{DB}    busy-timeout: 5\n    replica:\n      path: /b\n"),
            "dbs[0].busy-timeout: 5 is not a duration (e.g. 1m30s): add a unit, e.g. 5s (a bare number would be nanoseconds in Litestream)",
        ),
        (
            format!("{DB}    replica:\n      url: s3://b/p\n      force-path-style: maybe\n"),
            r#"dbs[0].replica.force-path-style: "maybe" is not a boolean (true or false)"#,
        ),
        (format!("{DB}    min-checkpoint-page-count: lots\n    replica:\n      path: /b\n"), r#"dbs[0].min-checkpoint-page-count: "lots" is not a whole number"#),
        ("dbs:\n  path: /a.db\n".into(), "dbs: a mapping is not a list (`- ` items)"),
        ("dbs:\n  - /a.db\n".into(), r#"dbs[0]: "/a.db" is not a mapping (`key: value` lines)"#),
        (format!("{DB}    replica:\n      - path: /b\n"), "dbs[0].replica: a list is not a mapping (`key: value` lines): use `replicas:` for a list"),
        (format!("{DB}    replicas:\n      path: /b\n"), "dbs[0].replicas: a mapping is not a list (`- ` items): use `replica:` for a single replica"),
        (format!("{DB}    replica:\n      type: ftp\n      path: /b\n"), r#"dbs[0].replica.type: "ftp" is not a replica type (file, s3, gs, abs, sftp, webdav, oss, nats)"#),
        (format!("{DB}    replica:\n      url: webdav://h/p\n      webdav-url: http://h\n"), "dbs[0].replica.webdav-url: give the webdav-url either in `url` or as `webdav-url:`, not both"),
        (format!("{DB}    replica:\n      type: webdav\n      path: /p\n"), "dbs[0].replica: a webdav replica needs a server: `webdav-url: http(s)://HOST[:PORT]` or `url: webdav(s)://HOST/path`"),
        (format!("{DB}    replica:\n      type: nats\n      bucket: b\n      client-cert: /c.pem\n"), "dbs[0].replica: client-cert and client-key must both be given for mutual TLS"),
        (format!("{DB}    replica:\n      type: nats\n      bucket: b\n      jwt: x\n"), "dbs[0].replica: jwt and seed must be given together"),
        (format!("{DB}    replica:\n      type: nats\n      bucket: b\n      max-reconnects: many\n"), r#"dbs[0].replica.max-reconnects: "many" is not a whole number (-1: unlimited)"#),
        (format!("{DB}    replica:\n      type: nats\n      path: p\n"), "dbs[0].replica: a nats replica needs a bucket: `bucket:` or `url: nats://HOST:PORT/BUCKET`"),
        (format!("{DB}    replica:\n      url: nats://h/b\n      bucket: c\n"), "dbs[0].replica.bucket: give the bucket either in `url` or as `bucket:`, not both"),
        (format!("{DB}    replica:\n      type: s3\n      url: file:///b\n"), "dbs[0].replica.type: \"s3\" does not match the file:// URL in `url`"),
        (format!("{DB}    replica:\n      path: /b\n      page-encoding: frame\n"), r#"dbs[0].replica.page-encoding: "frame" is not a page encoding (legacy or block)"#),
        (format!("{DB}    replica:\n      path: /b\n      sync-interval: 0s\n"), "dbs[0].replica.sync-interval: must be greater than 0"),
        (format!("{DB}    replica:\n      path: /b\nsnapshot:\n  interval: 0\n"), "snapshot.interval: must be greater than 0"),
        ("levels:\n  - interval: 0s\n".into(), "levels[0].interval: must be greater than 0"),
        ("levels:\n  - {}\n".into(), "levels[0]: `interval` is required"),
        ("levels: [{interval: 1s},{interval: 1s},{interval: 1s},{interval: 1s},{interval: 1s},{interval: 1s},{interval: 1s},{interval: 1s},{interval: 1s}]\n".into(), "levels: at most 8 levels (L1..L8; L9 is the snapshot level)"),
        ("health-failing-after: 0s\n".into(), "health-failing-after: must be greater than 0"),
        ("health-failing-after: soon\n".into(), r#"health-failing-after: "soon" is not a duration (e.g. 1m30s)"#),
        ("logging:\n  level: loud\n".into(), r#"logging.level: "loud" is not a log level (trace, debug, info, warn, error)"#),
        ("logging:\n  type: xml\n".into(), r#"logging.type: "xml" is not a log type (text or json)"#),
        ("socket:\n  permissions: rw\n".into(), r#"socket.permissions: "rw" is not file permissions (e.g. 0600)"#),
        ("socket:\n  permissions: 600\n".into(), "socket.permissions: 600 is not file permissions (e.g. 0600)"),
        ("socket:\n  permissions: \"4755\"\n".into(), r#"socket.permissions: "4755" is not file permissions (e.g. 0600)"#),
        ("socket:\n  enabled: yes please\n".into(), r#"socket.enabled: "yes please" is not a boolean (true or false)"#),
        // Structure.
        ("dbs:\n  - path: /a.db\n    dir: /data\n    replica: {path: /b}\n".into(), "dbs[0]: give either `path` or `dir`, not both"),
        ("dbs:\n  - replica: {path: /b}\n".into(), "dbs[0]: give `path` (a database file) or `dir` (a directory of databases)"),
        ("dbs:\n  - dir: /data\n    replica: {path: /b}\n".into(), "dbs[0]: `pattern` is required with `dir` (e.g. pattern: \"*.db\")"),
        (
            "dbs:\n  - dir: /data\n    pattern: '[a'\n    replica: {path: /b}\n".into(),
            r#"dbs[0].pattern: "[a" is not a file name pattern (e.g. *.db): a `[` has no closing `]`"#,
        ),
        (format!("{DB}    pattern: '*.db'\n    replica: {{path: /b}}\n"), "dbs[0].pattern: applies only to a directory (`dir:`), not to `path:`"),
        (
            "dbs:\n  - dir: /d\n    pattern: '*'\n    meta-dir: /m\n    meta-path: /n\n    replica: {path: /b}\n".into(),
            "dbs[0]: give `meta-path` or `meta-dir`, not both",
        ),
        (DB.into(), "dbs[0]: no replica: add `replica:` with a `url` (or `type` and `path`)"),
        (format!("{DB}    replicas: []\n"), "dbs[0]: no replica: add `replica:` with a `url` (or `type` and `path`)"),
        (format!("{DB}    replica: {{path: /b}}\n    replicas:\n      - path: /c\n"), "dbs[0]: give `replica` or `replicas`, not both"),
        (
            format!("{DB}    replicas:\n      - url: s3://b/one\n      - url: s3://b/two\n"),
            r#"dbs[0]: replicas[0] and replicas[1] are both named "s3"; give each replica its own `name`"#,
        ),
        (
            format!("{DB}    replicas:\n      - name: x\n        path: /b\n      - path: /c\n      - name: x\n        url: s3://b/p\n"),
            r#"dbs[0]: replicas[0] and replicas[2] are both named "x"; give each replica its own `name`"#,
        ),
        (
            "dbs:\n  - path: /a.db\n    replica: {path: /b}\n  - path: /x/../a.db\n    replica: {path: /c}\n".into(),
            "dbs[1]: /a.db is already configured by dbs[0]",
        ),
        (
            "dbs:\n  - path: /a.db\n    replica: {url: s3://b/p}\n  - path: /c.db\n    replica: {type: s3, bucket: b, path: /p/}\n".into(),
            "dbs[1].replicas[0]: s3://b/p is also the replica of dbs[0].replicas[0]; each database needs its own replica location",
        ),
        (
            format!("{DB}    replicas:\n      - {{name: a, path: /b}}\n      - {{name: c, url: 'file:///b/'}}\n"),
            "dbs[0].replicas[1]: file:///b is also the replica of dbs[0].replicas[0]; each database needs its own replica location",
        ),
        (
            "dbs:\n  - {path: /a.db, meta-path: /m, replica: {path: /b}}\n  - {path: /c.db, meta-path: /m, replica: {path: /d}}\n".into(),
            "dbs[1].meta-path: /m is also the meta-path of dbs[0]",
        ),
        // Replica requirements and conflicts.
        (format!("{DB}    replica:\n      type: s3\n      path: p\n"), "dbs[0].replica: a s3 replica needs a bucket: `bucket:` or `url: s3://BUCKET/path`"),
        (format!("{DB}    replica:\n      type: file\n"), "dbs[0].replica: a file replica needs `path` (or `url: file:///...`)"),
        (format!("{DB}    replica:\n      url: s3://b/p\n      path: q\n"), "dbs[0].replica.path: give the path either in `url` or as `path:`, not both"),
        (format!("{DB}    replica:\n      url: s3://b/p\n      bucket: c\n"), "dbs[0].replica.bucket: give the bucket either in `url` or as `bucket:`, not both"),
        (format!("{DB}    replica:\n      path: s3://b/p\n"), "dbs[0].replica.path: is a URL; give it as `url:` instead"),
        (
            format!("{DB}    replica:\n      url: s3://b/p\n      sse-customer-key: k\n      sse-customer-key-path: /k\n"),
            "dbs[0].replica: give `sse-customer-key` or `sse-customer-key-path`, not both",
        ),
        (format!("{DB}    replica:\n      url: 's3://b/p?region'\n      name: ''\n      sync-interval: x\n"), r#"dbs[0].replica.sync-interval: "x" is not a duration (e.g. 1m30s)"#),
        (format!("{DB}    replica:\n      url: 'ftp://x'\n"), r#"dbs[0].replica.url: invalid replica URL "ftp://x": unknown scheme "ftp" (file, s3, gs, abs, sftp, webdav, webdavs, oss, nats)"#),
        // age (issue 24): an identity is required; values never quoted.
        (format!("{DB}    replica:\n      path: /b\n      age:\n        recipients: [age1xyz]\n"), "dbs[0].replica.age: give at least one identity (`identities` or `identity-file`): compaction, snapshots, verify and restores decrypt what they read"),
        (format!("{DB}    replica:\n      path: /b\n      age:\n        identities: [{{k: AGE-SECRET-KEY-1X}}]\n"), "dbs[0].replica.age.identities[0]: must be a string or a list of strings"),
        (format!("{DB}    replica:\n      path: /b\n      age:\n        identity: AGE-SECRET-KEY-1X\n"), r#"dbs[0].replica.age: unknown key "identity" (did you mean "identity-file"?)"#),
        // YAML itself.
        ("dbs:\n  - path: /a.db\n\treplica: x\n".into(), "invalid YAML: found a tab character that violates indentation at line 3 column 1, while scanning a plain scalar at line 2 column 11"),
        ("a: 1\na: 2\n".into(), r#"invalid YAML: duplicate entry with key "a""#),
    ];
    for (yaml, want) in &cases {
        assert_eq!(err(yaml), *want, "\n{yaml}");
    }
}

#[test]
fn errors_never_show_secrets() {
    let cases: &[&str] = &[
        "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/p\n      secret-access-key: [hunter2]\n",
        "dbs:\n  - path: /a.db\n    replica:\n      url: 'sftp://bob:hunter2@/p'\n",
        "dbs:\n  - path: /a.db\n    replica:\n      url: 'sftp://bob:hunter2@h/p?x=1'\n",
    ];
    for yaml in cases {
        let e = err(yaml);
        assert!(!e.contains("hunter2"), "{e}");
    }
    let cfg = ok("dbs:\n  - path: /a.db\n    replica:\n      url: 'sftp://bob:hunter2@h/p'\n      key-path: /k\n");
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(dbg.contains("sftp://bob:***@h/p"), "{dbg}");
}

#[test]
fn warnings_for_keys_without_effect() {
    let cfg = ok("\
dbs:
  - path: /a.db
    shadow-retention-count: 2
    replica:
      path: /b
      region: us-east-1
      retention-check-interval: 1h
");
    assert_eq!(
        cfg.warnings,
        [
            "dbs[0].shadow-retention-count: Litestream 0.3 key; ignored",
            "dbs[0].replica: `region` does not apply to a file replica; ignored",
            "dbs[0].replica.retention-check-interval: Litestream 0.3 key; ignored (see l0-retention-check-interval)",
        ]
    );
}

#[test]
fn yaml_conveniences_of_go_configs() {
    // Merge keys, YAML 1.1 booleans, quoted numbers, empty sections.
    let cfg = ok("\
x-replica: &rep
  type: s3
  bucket: shared
  force-path-style: yes
dbs:
  - path: /a.db
    min-checkpoint-page-count: '500'
    replica:
      <<: *rep
      path: a
snapshot:
logging:
");
    let c = s3(&cfg.dbs[0].replicas[0]);
    assert_eq!(
        (c.bucket.as_str(), c.path.as_str(), c.force_path_style),
        ("shared", "a", true)
    );
    assert_eq!(cfg.dbs[0].min_checkpoint_page_count, 500);
    assert_eq!(cfg.snapshot.interval, S(86400));
}

#[test]
fn empty_files_have_no_databases() {
    for text in ["", "# nothing\n", "dbs:\n", "dbs: []\n"] {
        assert!(ok(text).dbs.is_empty(), "{text:?}");
    }
}

#[test]
fn load_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("litestream.yml");
    std::fs::write(
        &path,
        "dbs:\n  - path: /a.db\n    replica:\n      path: /b\n      sync_interval: 1s\n",
    )
    .unwrap();
    let e = load(&path, false).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            r#"{}: dbs[0].replica: unknown key "sync_interval" (did you mean "sync-interval"?)"#,
            path.display()
        )
    );
    assert_eq!(e.file(), Some(path.as_path()));
    assert_eq!(e.key_path(), "dbs[0].replica");
    assert!(matches!(e.kind(), ErrorKind::UnknownKey { .. }));

    std::fs::write(
        &path,
        "dbs:\n  - path: /a.db\n    replica:\n      path: /b\n",
    )
    .unwrap();
    assert_eq!(load(&path, true).unwrap().dbs.len(), 1);

    let missing = dir.path().join("nope.yml");
    let e = load(&missing, false).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!(
            "{}: cannot read the config file: ",
            missing.display()
        )),
        "{e}"
    );
    assert!(std::error::Error::source(&e).is_some());
}

#[test]
fn drill_interval_top_level_and_per_database() {
    let cfg = parse(
        "drill-interval: 6h\ndbs:\n  - path: /a.db\n    replica:\n      path: /ra\n  - path: /b.db\n    drill-interval: 30m\n    replica:\n      path: /rb\n",
        false,
        &|_| None,
    )
    .unwrap();
    let h = |n: u64| Duration::from_secs(n * 3600);
    assert_eq!(cfg.dbs[0].drill_interval, Some(h(6)));
    assert_eq!(cfg.dbs[1].drill_interval, Some(Duration::from_secs(1800)));
    let none = parse(
        "dbs:\n  - path: /a.db\n    replica:\n      path: /ra\n",
        false,
        &|_| None,
    )
    .unwrap();
    assert_eq!(none.dbs[0].drill_interval, None);
    let e = parse("drill-interval: 0s\ndbs: []\n", false, &|_| None).unwrap_err();
    assert_eq!(e.to_string(), "drill-interval: must be greater than 0");
}

/// Parity issue 18: `validation-interval` (replica, or top level as a default) and
/// Litestream's global `validation: {interval}` schedule a validation of each replica.
#[test]
fn validation_interval_per_replica_inherited_and_checked() {
    let m = |n: u64| Duration::from_secs(n * 60);
    let two = |top: &str| {
        ok(&format!(
            "{top}dbs:\n  - path: /a.db\n    replicas:\n      - name: near\n        path: /ra\n      \
             - name: far\n        path: /rb\n        validation-interval: 10m\n      \
             - name: off\n        path: /rc\n        validation-interval: 0s\n"
        ))
    };
    let got = |cfg: &Config| {
        cfg.dbs[0]
            .replicas
            .iter()
            .map(|r| r.validation_interval)
            .collect::<Vec<_>>()
    };
    // Nothing at the top level: only the replica that sets it; zero is off.
    assert_eq!(got(&two("")), vec![None, Some(m(10)), None]);
    // Litestream's global `validation.interval` is every replica's default.
    assert_eq!(
        got(&two("validation:\n  interval: 1m\n")),
        vec![Some(m(1)), Some(m(10)), None]
    );
    // A top-level `validation-interval` too, and it beats `validation.interval`.
    assert_eq!(
        got(&two(
            "validation-interval: 5m\nvalidation:\n  interval: 1m\n"
        )),
        vec![Some(m(5)), Some(m(10)), None]
    );
    assert_eq!(
        got(&two("validation-interval: 1s\n")),
        vec![Some(Duration::from_secs(1)), Some(m(10)), None]
    );
    // Bad values and keys are errors naming the key.
    for (yaml, want) in [
        ("validation-interval: soon\ndbs: []\n", "validation-interval: \"soon\" is not a duration"),
        ("validation-interval: 10\ndbs: []\n", "add a unit"),
        ("validation:\n  interval: -1m\ndbs: []\n", "validation.interval: \"-1m\" is not a duration"),
        ("validation:\n  every: 1m\ndbs: []\n", "validation: unknown key \"every\""),
        ("validation: 1m\ndbs: []\n", "validation: \"1m\" is not a mapping"),
        (
            "dbs:\n  - path: /a.db\n    replica:\n      path: /b\n      validation-interval: [1m]\n",
            "dbs[0].replica.validation-interval: a list is not a duration",
        ),
    ] {
        let e = err(yaml);
        assert!(e.contains(want), "{yaml}: {e}");
    }
}

#[test]
fn lease_block_defaults_keys_and_errors() {
    let cfg = parse(
        "dbs:\n  - path: /a.db\n    lease:\n      ttl: 30s\n      owner: host-a\n      auto-promote: true\n    replica:\n      path: /ra\n  - path: /b.db\n    lease: {}\n    replica:\n      path: /rb\n  - path: /c.db\n    replica:\n      path: /rc\n",
        false,
        &|_| None,
    )
    .unwrap();
    let s = Duration::from_secs;
    assert_eq!(
        cfg.dbs[0].lease,
        Some(LeaseConfig {
            ttl: s(30),
            renew_interval: s(10),
            owner: Some("host-a".into()),
            auto_promote: true,
        })
    );
    let b = cfg.dbs[1].lease.clone().unwrap();
    assert_eq!((b.ttl, b.owner, b.auto_promote), (s(10), None, false));
    assert_eq!(cfg.dbs[2].lease, None);
    assert!(err(
        "dbs:\n  - path: /a.db\n    lease:\n      tll: 5s\n    replica:\n      path: /r\n"
    )
    .contains("dbs[0].lease: unknown key \"tll\""),);
    assert_eq!(
        err("dbs:\n  - path: /a.db\n    lease:\n      ttl: 4s\n      renew-interval: 3s\n    replica:\n      path: /r\n"),
        "dbs[0].lease.renew-interval: must be at most half of `ttl`"
    );
}

/// Parity issue 18: every way of naming a replica gets the same endpoint and
/// credentials, whichever way the config or the environment gives them.
#[test]
fn replica_urls_resolve_like_the_configured_replica() {
    const ENDPOINT: &str = "http://127.0.0.1:3900";
    let top_level = format!(
        "access-key-id: top-id\nsecret-access-key: top-secret\ndbs:\n  - path: /var/lib/app/app-data.db\n    replicas:\n      - type: s3\n        bucket: clojure-db-replica\n        path: database\n        endpoint: {ENDPOINT}\n        force-path-style: true\n"
    );
    let per_replica = format!(
        "dbs:\n  - path: /var/lib/app/app-data.db\n    replica:\n      url: s3://clojure-db-replica/database\n      endpoint: {ENDPOINT}\n      access-key-id: own-id\n      secret-access-key: own-secret\n"
    );
    let from_env = format!(
        "dbs:\n  - path: /var/lib/app/app-data.db\n    replica:\n      url: s3://clojure-db-replica/database?endpoint={ENDPOINT}\n"
    );
    let aws = |k: &str| match k {
        "AWS_ACCESS_KEY_ID" => Some("aws-id".to_string()),
        "AWS_SECRET_ACCESS_KEY" => Some("aws-secret".to_string()),
        _ => None,
    };
    let litestream = |k: &str| match k {
        "LITESTREAM_ACCESS_KEY_ID" => Some("ls-id".to_string()),
        "LITESTREAM_SECRET_ACCESS_KEY" => Some("ls-secret".to_string()),
        _ => None,
    };
    type EnvFn<'a> = &'a dyn Fn(&str) -> Option<String>;
    let styles: [(&str, &str, EnvFn, (&str, &str)); 4] = [
        (
            "top-level keys",
            &top_level,
            &no_env,
            ("top-id", "top-secret"),
        ),
        (
            "per-replica keys",
            &per_replica,
            &no_env,
            ("own-id", "own-secret"),
        ),
        ("AWS_* variables", &from_env, &aws, ("aws-id", "aws-secret")),
        (
            "LITESTREAM_* variables",
            &from_env,
            &litestream,
            ("ls-id", "ls-secret"),
        ),
    ];
    let namings = [
        "s3://clojure-db-replica/database",
        "s3://clojure-db-replica/database/",
        "s3://clojure-db-replica/database?endpoint=127.0.0.1:3900&region=us-east-1",
        "S3://clojure-db-replica/./database?forcePathStyle=true",
    ];
    for (style, yaml, env, (id, secret)) in styles {
        let cfg = parse(yaml, false, env).unwrap_or_else(|e| panic!("{style}: {e}"));
        // By the database's path: the configured replica itself.
        let by_path = s3(&cfg.dbs[0].replicas[0]).clone();
        let creds = |c: &S3Config| {
            (
                c.access_key_id.as_ref().map(|s| s.expose().to_string()),
                c.secret_access_key.as_ref().map(|s| s.expose().to_string()),
                c.endpoint.clone(),
                c.bucket.clone(),
                c.path.clone(),
            )
        };
        let want = (
            Some(id.to_string()),
            Some(secret.to_string()),
            Some(ENDPOINT.to_string()),
            "clojure-db-replica".to_string(),
            "database".to_string(),
        );
        assert_eq!(creds(&by_path), want, "{style}: by path");
        for url in namings {
            let kind = resolve_replica_url(Some(&cfg), url, env)
                .unwrap_or_else(|e| panic!("{style}: {url}: {e}"));
            let ReplicaKind::S3(c) = &kind else {
                panic!("{style}: {url}: not s3: {kind:?}")
            };
            assert_eq!(creds(c), want, "{style}: {url}");
            assert!(c.force_path_style, "{style}: {url}");
        }
        // The URL's own query wins over the configured replica's settings.
        let kind = resolve_replica_url(
            Some(&cfg),
            "s3://clojure-db-replica/database?region=eu-west-3",
            env,
        )
        .unwrap();
        let ReplicaKind::S3(c) = &kind else {
            unreachable!()
        };
        assert_eq!(c.region.as_deref(), Some("eu-west-3"), "{style}");
    }
}

#[test]
fn replica_urls_elsewhere_get_only_top_level_keys() {
    let cfg = ok("\
access-key-id: top-id
secret-access-key: top-secret
dbs:
  - path: /a.db
    replica:
      type: s3
      bucket: b
      path: a
      endpoint: http://127.0.0.1:3900
      access-key-id: own-id
      secret-access-key: own-secret
  - dir: /tenants
    pattern: '*.db'
    replica:
      url: sftp://backup@host:2222/srv/tenants
      key-path: /etc/sr/id_ed25519
");
    let get = |url: &str| resolve_replica_url(Some(&cfg), url, &no_env).unwrap();
    let id = |k: &ReplicaKind| match k {
        ReplicaKind::S3(c) => (
            c.access_key_id.as_ref().map(|s| s.expose().to_string()),
            c.endpoint.clone(),
        ),
        other => panic!("not s3: {other:?}"),
    };
    // Another path, another bucket, another endpoint: not that replica; the top level.
    for url in [
        "s3://b/other",
        "s3://b/a/deeper",
        "s3://c/a",
        "s3://b/a?endpoint=http://127.0.0.1:9000",
    ] {
        let (key, endpoint) = id(&get(url));
        assert_eq!(key.as_deref(), Some("top-id"), "{url}");
        assert_ne!(endpoint.as_deref(), Some("http://127.0.0.1:3900"), "{url}");
    }
    // The same endpoint spelt differently is the same location.
    assert_eq!(
        id(&get("s3://b/a?endpoint=HTTP://127.0.0.1:3900/"))
            .0
            .as_deref(),
        Some("own-id")
    );
    // A database under a `dir:` entry: that entry's replica, at the database's own path.
    let ReplicaKind::Sftp(c) = get("sftp://backup@host:2222/srv/tenants/t1.db") else {
        panic!("not sftp")
    };
    assert_eq!(
        (c.path.as_str(), c.key_path.as_deref()),
        (
            "/srv/tenants/t1.db",
            Some(std::path::Path::new("/etc/sr/id_ed25519"))
        )
    );
    // No config: the URL and the environment only.
    let (key, endpoint) = id(&resolve_replica_url(None, "s3://b/a", &no_env).unwrap());
    assert_eq!((key, endpoint), (None, None));
    // `requireContentMD5` in the URL is acted on (`require-content-md5`).
    let ReplicaKind::S3(c) =
        resolve_replica_url(None, "s3://b/a?requireContentMD5=false", &no_env).unwrap()
    else {
        panic!("not s3")
    };
    assert_eq!(c.require_content_md5, Some(false));
}

/// Parity issue 18: every Litestream key is acted on; the values that ask for the
/// defaults, and empty strings (an unset `$VAR`), are accepted without a warning.
#[test]
fn litestream_keys_at_their_defaults_are_accepted() {
    // Values that ask for what sqlite-replicate does anyway, and empty strings (an unset
    // `$VAR`), are accepted.
    let cfg = ok("\
verify-compaction: false
auto-recover: false
mcp-addr: ''
heartbeat-url: ''
socket:
  enabled: false
  path: /run/sr.sock
logging:
  stderr: true
  source: false
dbs:
  - dir: /data
    pattern: '*.db'
    watch: false
    replica:
      url: s3://b/a?requireContentMD5=false
      auto-recover: false
      require-content-md5: false
");
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
}

/// `permissions` is octal however it is written: a YAML 1.1 octal number (as Go reads
/// it), a quoted string, or `0o`.
#[test]
fn socket_permissions_are_octal() {
    for (text, want) in [
        ("0600", 0o600),
        ("0640", 0o640),
        ("\"0660\"", 0o660),
        ("'600'", 0o600),
        ("0o644", 0o644),
        ("0", 0),
    ] {
        let cfg = parse(&format!("socket:\n  permissions: {text}\n"), false, &|_| {
            None
        })
        .unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(cfg.socket.permissions, want, "{text}");
    }
}

/// Parity issue 18: `heartbeat-url` and `heartbeat-interval` are acted on (`heartbeat.rs`)
/// and checked as Litestream checks them; the URL (it may carry a token) is never shown.
#[test]
fn heartbeat_keys() {
    // Accepted, with Litestream's default interval.
    let cfg = ok("heartbeat-url: https://hc-ping.com/secret-uuid\n");
    let hb = cfg.heartbeat.as_ref().expect("heartbeat");
    assert_eq!(
        (hb.url.expose(), hb.interval),
        ("https://hc-ping.com/secret-uuid", Duration::from_secs(300))
    );
    assert!(!format!("{cfg:?}").contains("secret-uuid"));
    let cfg = ok("heartbeat-url: http://127.0.0.1:8080/ping\nheartbeat-interval: 1m\n");
    assert_eq!(cfg.heartbeat.unwrap().interval, Duration::from_secs(60));
    // Empty (an unset `$VAR`): no heartbeat.
    assert!(ok("heartbeat-url: ''\n").heartbeat.is_none());
    // An interval alone does nothing: said so.
    let cfg = ok("heartbeat-interval: 10m\n");
    assert!(cfg.heartbeat.is_none());
    assert_eq!(
        cfg.warnings,
        ["heartbeat-interval: no effect without `heartbeat-url`"]
    );

    let cases = [
        ("heartbeat-url: ftp://hc.example/secret-uuid\n", "heartbeat-url: must be an http:// or https:// URL with a host (the scheme is not http or https; the value is not shown: it may carry a token)"),
        ("heartbeat-url: hc.example/secret-uuid\n", "heartbeat-url: must be an http:// or https:// URL with a host (the scheme is not http or https; the value is not shown: it may carry a token)"),
        ("heartbeat-url: 'https://?secret-uuid'\n", "heartbeat-url: must be an http:// or https:// URL with a host (it does not parse as a URL; the value is not shown: it may carry a token)"),
        ("heartbeat-url: 'http://[secret-uuid/'\n", "heartbeat-url: must be an http:// or https:// URL with a host (it does not parse as a URL; the value is not shown: it may carry a token)"),
        // Litestream refuses an interval under its minimum (`ErrInvalidHeartbeatInterval`).
        ("heartbeat-url: https://hc.example/secret-uuid\nheartbeat-interval: 30s\n", "heartbeat-interval: 30s is too short: the heartbeat interval must be at least 1m (as in Litestream)"),
        ("heartbeat-interval: 59s\n", "heartbeat-interval: 59s is too short: the heartbeat interval must be at least 1m (as in Litestream)"),
        ("heartbeat-url: https://hc.example/secret-uuid\nheartbeat-interval: often\n", r#"heartbeat-interval: "often" is not a duration (e.g. 1m30s)"#),
    ];
    for (yaml, want) in cases {
        let e = err(yaml);
        assert_eq!(e, want, "{yaml}");
        assert!(!e.contains("secret-uuid"), "{e}");
    }
}

/// `mcp-addr` is a listen address (`HOST:PORT`, `[IPv6]:PORT`, `:PORT`); anything else
/// stops the start with the key's name and what was expected.
#[test]
fn mcp_addr_is_a_listen_address() {
    for good in [
        "127.0.0.1:3001",
        ":3001",
        "localhost:0",
        "[::1]:3001",
        "0.0.0.0:3001",
    ] {
        let cfg = ok(&format!("mcp-addr: '{good}'\n"));
        assert_eq!(cfg.mcp_addr.as_deref(), Some(good));
    }
    assert_eq!(ok("dbs: []\n").mcp_addr, None);
    let cases = [
        ("3001", "no `:PORT`"),
        ("127.0.0.1:", "the port is not a number from 0 to 65535"),
        (
            "localhost:99999",
            "the port is not a number from 0 to 65535",
        ),
        ("localhost:+1", "the port is not a number from 0 to 65535"),
        (
            "http://localhost:3001",
            "the host is not a name or an IPv4 address (IPv6 goes in brackets)",
        ),
        (
            "::1:3001",
            "the host is not a name or an IPv4 address (IPv6 goes in brackets)",
        ),
        ("[::1:3001", "`[` without `]`"),
        ("[nope]:3001", "the bracketed host is not an IPv6 address"),
        ("[::1]3001", "no `:PORT` after the IPv6 address"),
    ];
    for (bad, why) in cases {
        assert_eq!(
            err(&format!("mcp-addr: '{bad}'\n")),
            format!("mcp-addr: {bad:?} is not an address to listen on ({why}): expected HOST:PORT or :PORT, e.g. 127.0.0.1:3001"),
            "{bad}"
        );
    }
}
/// `notify-url` (ours): an http(s) URL, kept as a secret and never shown; empty is none.
#[test]
fn notify_url_key() {
    let cfg = ok("notify-url: https://hooks.example/notify?token=secret-uuid\n");
    assert_eq!(
        cfg.notify_url.as_ref().map(|u| u.expose()),
        Some("https://hooks.example/notify?token=secret-uuid")
    );
    assert!(!format!("{cfg:?}").contains("secret-uuid"));
    assert!(ok("notify-url: ''\n").notify_url.is_none());
    assert!(ok("addr: ':9090'\n").notify_url.is_none());
    for yaml in [
        "notify-url: ftp://hooks.example/secret-uuid\n",
        "notify-url: 'http://[secret-uuid/'\n",
    ] {
        let e = err(yaml);
        assert!(
            e.starts_with("notify-url: must be an http:// or https:// URL with a host ("),
            "{e}"
        );
        assert!(!e.contains("secret-uuid"), "{e}");
    }
}

/// `verify-compaction` (top level): acted on; every replica's merges are checked.
#[test]
fn verify_compaction_key() {
    assert!(!ok("addr: ':9090'\n").verify_compaction);
    assert!(!ok("verify-compaction: false\n").verify_compaction);
    assert!(ok("verify-compaction: true\n").verify_compaction);
    let e = err("verify-compaction: sometimes\n");
    assert!(e.starts_with("verify-compaction: "), "{e}");
}

/// `auto-recover` (replica, or top-level default): acted on, per replica.
#[test]
fn auto_recover_key() {
    const DB: &str = "dbs:\n  - path: /var/lib/app.db\n";
    let cfg = ok(&format!(
        "auto-recover: true\n{DB}    replicas:\n      - path: /a\n        name: a\n      - path: /b\n        name: b\n        auto-recover: false\n"
    ));
    let r = &cfg.dbs[0].replicas;
    assert!(r[0].auto_recover && !r[1].auto_recover);
    let cfg = ok(&format!(
        "{DB}    replica:\n      path: /a\n      auto-recover: yes\n"
    ));
    assert!(cfg.dbs[0].replicas[0].auto_recover);
    let cfg = ok(&format!("{DB}    replica:\n      path: /a\n"));
    assert!(!cfg.dbs[0].replicas[0].auto_recover);
}

/// Parity issue 18: the Litestream keys that were refused until acted on, read with their
/// defaults and their values.
#[test]
fn formerly_refused_litestream_keys_are_read() {
    let cfg = ok("dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n");
    assert_eq!(cfg.shutdown_sync_interval, Duration::from_millis(500));
    assert!(!cfg.logging.stdout && !cfg.logging.source);
    let db = &cfg.dbs[0];
    assert_eq!((db.truncate_page_n, db.max_sync_wal_bytes), (121_359, None));
    assert_eq!(db.replicas[0].max_sync_ltx_files, None);
    assert_eq!(s3(&db.replicas[0]).require_content_md5, None);

    let cfg = ok("\
shutdown-sync-interval: 250ms
logging:
  stderr: false
  source: true
max-sync-ltx-files: 16
dbs:
  - path: /a.db
    truncate-page-n: 5000
    max-sync-wal-bytes: 1MiB
    replicas:
      - url: s3://b/a?requireContentMD5=false
      - url: s3://b/c
        require-content-md5: true
        max-sync-ltx-files: 4
        name: c
");
    assert_eq!(cfg.shutdown_sync_interval, Duration::from_millis(250));
    assert!(cfg.logging.stdout && cfg.logging.source);
    let db = &cfg.dbs[0];
    assert_eq!(
        (db.truncate_page_n, db.max_sync_wal_bytes),
        (5000, Some(1 << 20))
    );
    assert_eq!(db.replicas[0].max_sync_ltx_files, Some(16));
    assert_eq!(db.replicas[1].max_sync_ltx_files, Some(4));
    assert_eq!(s3(&db.replicas[0]).require_content_md5, Some(false));
    assert_eq!(s3(&db.replicas[1]).require_content_md5, Some(true));
    // Litestream's zeros: truncate-page-n 0 is its default; the limits 0 are none.
    let cfg = ok("dbs:\n  - path: /a.db\n    truncate-page-n: 0\n    max-sync-wal-bytes: 0\n    replica:\n      path: /b\n      max-sync-ltx-files: 0\n");
    let db = &cfg.dbs[0];
    assert_eq!((db.truncate_page_n, db.max_sync_wal_bytes), (121_359, None));
    assert_eq!(db.replicas[0].max_sync_ltx_files, None);

    let cases = [
        (
            "shutdown-sync-interval: 0s\n",
            "shutdown-sync-interval: must be greater than 0",
        ),
        (
            "shutdown-sync-interval: soon\n",
            r#"shutdown-sync-interval: "soon" is not a duration (e.g. 1m30s)"#,
        ),
        (
            "logging:\n  stderr: maybe\n",
            r#"logging.stderr: "maybe" is not a boolean"#,
        ),
        (
            "dbs:\n  - path: /a.db\n    truncate-page-n: -1\n    replica:\n      path: /b\n",
            "dbs[0].truncate-page-n: -1 is not a whole number",
        ),
    ];
    for (yaml, want) in cases {
        let e = err(yaml);
        assert!(e.starts_with(want), "{yaml}: {e}");
    }
}

/// Replica durations from the environment: below every key of the file, above the
/// built-in defaults; a bad value names the variable.
#[test]
fn replica_durations_from_the_environment() {
    let env = |k: &str| -> Option<String> {
        match k {
            "SQLITE_REPLICATE_SYNC_INTERVAL" => Some("3s".into()),
            "SQLITE_REPLICATE_VALIDATION_INTERVAL" => Some("10m".into()),
            "SQLITE_REPLICATE_SNAPSHOT_INTERVAL" => Some("1h".into()),
            "SQLITE_REPLICATE_RETENTION" => Some("72h".into()),
            _ => None,
        }
    };
    let parse_env = |yaml: &str, env: &dyn Fn(&str) -> Option<String>| {
        parse(yaml, false, env).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    };
    const DB: &str = "dbs:\n  - path: /a.db\n    replica:\n      url: s3://b/a\n";
    let cfg = parse_env(DB, &env);
    let r = &cfg.dbs[0].replicas[0];
    assert_eq!(r.sync_interval, Some(Duration::from_secs(3)));
    assert_eq!(r.validation_interval, Some(Duration::from_secs(600)));
    assert_eq!(cfg.snapshot.interval, Duration::from_secs(3600));
    assert_eq!(cfg.snapshot.retention, Duration::from_secs(72 * 3600));
    // Any key of the file wins: the replica's, the top level's, `validation:`, `snapshot:`.
    let cfg = parse_env(
        "sync-interval: 5s\nvalidation:\n  interval: 1m\nsnapshot:\n  interval: 2h\ndbs:\n  - path: /a.db\n    replicas:\n      - url: s3://b/a\n        sync-interval: 7s\n      - url: s3://b/c\n        name: c\n",
        &env,
    );
    let rs = &cfg.dbs[0].replicas;
    assert_eq!(rs[0].sync_interval, Some(Duration::from_secs(7)));
    assert_eq!(rs[1].sync_interval, Some(Duration::from_secs(5)));
    assert_eq!(rs[1].validation_interval, Some(Duration::from_secs(60)));
    assert_eq!(cfg.snapshot.interval, Duration::from_secs(7200));
    assert_eq!(cfg.snapshot.retention, Duration::from_secs(72 * 3600));
    // Litestream's VFS name for the sync interval, below ours; empty is unset.
    let lit = |k: &str| (k == "LITESTREAM_SYNC_INTERVAL").then(|| "2s".to_string());
    let cfg = parse_env(DB, &lit);
    assert_eq!(
        cfg.dbs[0].replicas[0].sync_interval,
        Some(Duration::from_secs(2))
    );
    let empty = |k: &str| k.starts_with("SQLITE_REPLICATE_").then(String::new);
    let cfg = parse_env(DB, &empty);
    assert_eq!(cfg.dbs[0].replicas[0].sync_interval, None);
    assert_eq!(cfg.snapshot.interval, Duration::from_secs(24 * 3600));

    for (var, val, want) in [
        (
            "SQLITE_REPLICATE_SYNC_INTERVAL",
            "fast",
            r#"$SQLITE_REPLICATE_SYNC_INTERVAL: "fast" is not a duration"#,
        ),
        (
            "SQLITE_REPLICATE_SYNC_INTERVAL",
            "0s",
            "$SQLITE_REPLICATE_SYNC_INTERVAL: must be greater than 0",
        ),
        (
            "LITESTREAM_SYNC_INTERVAL",
            "1",
            r#"$LITESTREAM_SYNC_INTERVAL: "1" is not a duration"#,
        ),
        (
            "SQLITE_REPLICATE_RETENTION",
            "-1h",
            r#"$SQLITE_REPLICATE_RETENTION: "-1h" is not a duration"#,
        ),
        (
            "SQLITE_REPLICATE_SNAPSHOT_INTERVAL",
            "0",
            "$SQLITE_REPLICATE_SNAPSHOT_INTERVAL: must be greater than 0",
        ),
    ] {
        let bad = |k: &str| (k == var).then(|| val.to_string());
        let e = parse(DB, false, &bad).unwrap_err().to_string();
        assert!(e.starts_with(want), "{var}={val}: {e}");
    }
}

#[test]
fn upload_budget_defaults_by_type_and_overrides() {
    let b = |per_sec: f64, burst: u32| Some(types::UploadBudget { per_sec, burst });
    // Object stores: 1/s, burst 20; file and SFTP: unlimited.
    let cfg = ok("dbs:\n  - path: /a.db\n    replicas:\n      - url: s3://b/a\n      - path: /b\n      - url: sftp://u@h/p\n      - url: gs://b/a\n      - url: abs://acct@c/a\n");
    let got: Vec<_> = cfg.dbs[0]
        .replicas
        .iter()
        .map(|r| r.upload_budget)
        .collect();
    assert_eq!(got, vec![b(1.0, 20), None, None, b(1.0, 20), b(1.0, 20)]);
    // A replica's own keys, else the top level's; rate forms; 0 turns the limit off.
    let cfg = ok("upload-rate: 50/s\nupload-burst: 5\ndbs:\n  - path: /a.db\n    replicas:\n      - url: s3://b/a\n      - path: /b\n      - url: s3://b/c\n        name: c\n        upload-rate: 0\n      - url: s3://b/d\n        name: d\n        upload-rate: 0.5\n      - url: s3://b/e\n        name: e\n        upload-rate: '120/m'\n        upload-burst: 1\n");
    let got: Vec<_> = cfg.dbs[0]
        .replicas
        .iter()
        .map(|r| r.upload_budget)
        .collect();
    assert_eq!(
        got,
        vec![b(50.0, 5), b(50.0, 5), None, b(0.5, 5), b(2.0, 1)]
    );
    // A file replica given a rate gets the default burst.
    let cfg = ok("dbs:\n  - path: /a.db\n    replica:\n      path: /b\n      upload-rate: 2\n");
    assert_eq!(cfg.dbs[0].replicas[0].upload_budget, b(2.0, 20));
    // A top-level burst is a default: a file replica without a rate ignores it.
    let cfg = ok("upload-burst: 3\ndbs:\n  - path: /a.db\n    replica:\n      path: /b\n");
    assert_eq!(cfg.dbs[0].replicas[0].upload_budget, None);

    const DB: &str = "dbs:\n  - path: /a.db\n    replica:\n";
    let cases = [
        (
            format!("{DB}      url: s3://b/a\n      upload-rate: fast\n"),
            r#"dbs[0].replica.upload-rate: "fast" is not uploads per second (e.g. 1, 0.5, 50/s, 60/m; 0: unlimited)"#,
        ),
        (
            format!("{DB}      url: s3://b/a\n      upload-rate: -1\n"),
            "dbs[0].replica.upload-rate: -1 is not uploads per second (e.g. 1, 0.5, 50/s, 60/m; 0: unlimited)",
        ),
        (
            format!("{DB}      url: s3://b/a\n      upload-rate: 5/d\n"),
            r#"dbs[0].replica.upload-rate: "5/d" is not uploads per second (e.g. 1, 0.5, 50/s, 60/m; 0: unlimited)"#,
        ),
        (
            format!("{DB}      url: s3://b/a\n      upload-burst: 0\n"),
            "dbs[0].replica.upload-burst: must be at least 1 (one upload)",
        ),
        (
            format!("upload-burst: 0\n{DB}      url: s3://b/a\n"),
            "upload-burst: must be at least 1 (one upload)",
        ),
        (
            format!("{DB}      url: s3://b/a\n      upload-burst: many\n"),
            r#"dbs[0].replica.upload-burst: "many" is not a whole number"#,
        ),
        (
            format!("{DB}      path: /b\n      upload-burst: 5\n"),
            "dbs[0].replica.upload-burst: has no effect: a file replica has no upload-rate by default; set one",
        ),
        (
            format!("{DB}      url: s3://b/a\n      upload-rate: 0\n      upload-burst: 5\n"),
            "dbs[0].replica.upload-burst: has no effect: upload-rate is 0 (unlimited)",
        ),
    ];
    for (yaml, want) in cases {
        assert_eq!(err(&yaml), want, "{yaml}");
    }
}

#[test]
fn nats_keys_reach_the_config_and_secrets_never_print() {
    let cfg = ok("\
timeout: 3s
dbs:
  - path: /a.db
    replica:
      type: nats
      bucket: bkt
      path: db/app
      username: bob
      password: hunter2
      token: tok-hunter2
      nkey: SUhunter2
      creds: ~/x.creds
      jwt: jwt-hunter2
      seed: seed-hunter2
      tls: true
      root-cas: [/ca1.pem, /ca2.pem]
      client-cert: /c.pem
      client-key: /k.pem
      max-reconnects: -1
      reconnect-wait: 250ms
");
    let r = &cfg.dbs[0].replicas[0];
    let ReplicaKind::Nats(c) = &r.kind else {
        panic!("{:?}", r.kind)
    };
    assert_eq!(
        c,
        &NatsConfig {
            server: None,
            bucket: "bkt".into(),
            path: "db/app".into(),
            username: Some("bob".into()),
            password: Some(Secret::new("hunter2")),
            token: Some(Secret::new("tok-hunter2")),
            nkey: Some(Secret::new("SUhunter2")),
            creds: Some(PathBuf::from("~/x.creds")),
            jwt: Some(Secret::new("jwt-hunter2")),
            seed: Some(Secret::new("seed-hunter2")),
            tls: true,
            root_cas: vec!["/ca1.pem".into(), "/ca2.pem".into()],
            client_cert: Some("/c.pem".into()),
            client_key: Some("/k.pem".into()),
            max_reconnects: None,
            reconnect_wait: Some(Duration::from_millis(250)),
            // A top-level default.
            timeout: Some(Duration::from_secs(3)),
        }
    );
    assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
    assert_eq!(r.kind.describe(), "nats://127.0.0.1:4222/bkt/db/app");
    // The object stores' request budget by default (Litestream's pace when writes are
    // sustained), as for every store that is not a local directory or SFTP.
    assert!(r.upload_budget.is_some());
    let dbg = format!("{cfg:?}");
    assert!(!dbg.contains("hunter2"), "{dbg}");
    // NATS keys on another type do nothing and say so.
    let cfg = ok("dbs:\n  - path: /a.db\n    replica:\n      path: /b\n      token: t\n");
    assert_eq!(
        cfg.warnings,
        ["dbs[0].replica: `token` does not apply to a file replica; ignored"]
    );
}

#[test]
fn age_block_as_litestream_03_plus_key_files_and_a_top_level_default() {
    let env = |k: &str| (k == "AGE_ID").then(|| "AGE-SECRET-KEY-1FROMENV".to_string());
    let yaml = "\
age:
  identity-file: /etc/keys/default.txt
dbs:
  - path: /a.db
    replicas:
      - url: file:///r
        name: r
        age:
          identities:
            - ${AGE_ID}
          recipients: [age1one, age1two]
          recipients-file: [/k/r1.txt, /k/r2.txt]
      - url: file:///s
        name: s
      - url: file:///t
        name: t
        age:
          identity-file: /k/own.txt
";
    let cfg = super::parse(yaml, true, &env).unwrap();
    let rs = &cfg.dbs[0].replicas;
    let a = rs[0].age.as_ref().unwrap();
    assert_eq!(a.identities.len(), 1);
    assert_eq!(a.identities[0].expose(), "AGE-SECRET-KEY-1FROMENV");
    assert_eq!(a.recipients, ["age1one", "age1two"]);
    assert_eq!(
        a.recipients_files,
        [PathBuf::from("/k/r1.txt"), PathBuf::from("/k/r2.txt")]
    );
    // The top-level block is every other replica's default; a replica's own replaces it.
    let b = rs[1].age.as_ref().unwrap();
    assert_eq!(b.identity_files, [PathBuf::from("/etc/keys/default.txt")]);
    assert_eq!(
        rs[2].age.as_ref().unwrap().identity_files,
        [PathBuf::from("/k/own.txt")]
    );
    // Identities never print.
    let shown = format!("{:?} {:?}", rs[0], cfg.replica_defaults);
    assert!(!shown.contains("FROMENV"), "{shown}");
}
