//! Directory configs (`dir:` + `pattern:`): turning the entry into the config of one
//! database file found in the directory, as Litestream does.
//!
//! Each file gets its own replica location, the configured one with the file's path
//! relative to `dir` appended (`s3://b/prefix` + `tenants/a.db` → `s3://b/prefix/tenants/a.db`),
//! and its own meta directory: with `meta-dir`/`meta-path` set,
//! `<meta-dir>/<reldir>/.<file>-sqlite-replicate`; otherwise none is set and the engine's
//! default applies, which is the same spelling beside the file
//! (`<dir>/<reldir>/.<file>-sqlite-replicate`).
//!
//! Scanning the directory is the caller's job (see `setup.rs`); this file does no I/O.

use std::path::{Component, Path};

use super::error::{ConfigError, ErrorKind};
use super::types::{DbConfig, DbSource, ReplicaKind};
use super::url::append_url_path;

/// The config for `db_file`, a file found under the `dir` of `dir_cfg`.
pub fn expand_dir_db(dir_cfg: &DbConfig, db_file: &Path) -> Result<DbConfig, ConfigError> {
    let DbSource::Dir { dir, .. } = &dir_cfg.source else {
        return Err(ConfigError::new(
            "",
            ErrorKind::Invalid("expand_dir_db needs a `dir` entry, not a `path` one".into()),
        ));
    };
    let outside = || {
        ConfigError::new(
            "",
            ErrorKind::Invalid(format!(
                "{} is not a file under {}",
                db_file.display(),
                dir.display()
            )),
        )
    };
    let rel = db_file.strip_prefix(dir).map_err(|_| outside())?;
    let parts: Vec<&str> = rel
        .components()
        .map(|c| match c {
            Component::Normal(s) => s.to_str().ok_or_else(outside),
            _ => Err(outside()),
        })
        .collect::<Result<_, _>>()?;
    let Some((file, _)) = parts.split_last() else {
        return Err(outside());
    };
    let rel_slash = parts.join("/");

    let mut out = dir_cfg.clone();
    out.source = DbSource::Path(db_file.to_path_buf());
    out.meta_path = dir_cfg.meta_path.as_ref().map(|base| {
        let rel_dir = rel.parent().unwrap_or(Path::new(""));
        base.join(rel_dir).join(format!(".{file}-sqlite-replicate"))
    });
    for r in &mut out.replicas {
        match &mut r.kind {
            ReplicaKind::File { path } => *path = path.join(rel),
            ReplicaKind::S3(c) => c.path = join_slash(&c.path, &rel_slash),
            ReplicaKind::Gcs(c) => c.path = join_slash(&c.path, &rel_slash),
            ReplicaKind::Abs(c) => c.path = join_slash(&c.path, &rel_slash),
            ReplicaKind::Sftp(c) => c.path = join_slash(&c.path, &rel_slash),
            ReplicaKind::WebDav(c) => c.path = join_slash(&c.path, &rel_slash),
            ReplicaKind::Nats(c) => c.path = join_slash(&c.path, &rel_slash),
        }
        if let Some(u) = &r.url {
            r.url = Some(append_url_path(u, &rel_slash));
        }
    }
    Ok(out)
}

fn join_slash(base: &str, rel: &str) -> String {
    let base = base.trim_end_matches('/');
    if base.is_empty() {
        rel.to_string()
    } else {
        format!("{base}/{rel}")
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::parse;

    fn dir_db(yaml: &str) -> DbConfig {
        parse(yaml, false, &|_| None).unwrap().dbs.remove(0)
    }

    #[test]
    fn appends_the_relative_path_to_each_replica() {
        let cfg = dir_db(
            "dbs:\n  - dir: /data\n    pattern: '*.db'\n    recursive: true\n    replicas:\n      - path: /backups\n      - url: s3://bkt/prefix?region=eu\n      - name: plain-s3\n        type: s3\n        bucket: b2\n      - url: sftp://u@h/srv\n",
        );
        let cases: &[(&str, &str, &str, &str, &str)] = &[
            // file, expected file replica, s3 path, s3 url, plain s3 path
            (
                "/data/a.db",
                "/backups/a.db",
                "prefix/a.db",
                "s3://bkt/prefix/a.db?region=eu",
                "a.db",
            ),
            (
                "/data/t/x/b.db",
                "/backups/t/x/b.db",
                "prefix/t/x/b.db",
                "s3://bkt/prefix/t/x/b.db?region=eu",
                "t/x/b.db",
            ),
        ];
        for (file, want_file, want_s3, want_url, want_plain) in cases {
            let db = expand_dir_db(&cfg, Path::new(file)).unwrap();
            assert_eq!(db.source, DbSource::Path(PathBuf::from(file)));
            assert_eq!(db.meta_path, None, "the engine default applies");
            assert_eq!(
                db.replicas[0].kind,
                ReplicaKind::File {
                    path: PathBuf::from(want_file)
                }
            );
            let ReplicaKind::S3(s3) = &db.replicas[1].kind else {
                panic!()
            };
            assert_eq!(s3.path, *want_s3);
            assert_eq!(db.replicas[1].url.as_deref(), Some(*want_url));
            let ReplicaKind::S3(plain) = &db.replicas[2].kind else {
                panic!()
            };
            assert_eq!(plain.path, *want_plain);
            let ReplicaKind::Sftp(sftp) = &db.replicas[3].kind else {
                panic!()
            };
            assert_eq!(
                sftp.path,
                format!("/srv/{}", file.trim_start_matches("/data/"))
            );
        }
    }

    #[test]
    fn meta_dir_gets_a_per_file_directory() {
        for key in ["meta-dir", "meta-path"] {
            let cfg = dir_db(&format!("dbs:\n  - dir: /data\n    pattern: '*.db'\n    {key}: /var/lib/meta\n    replica:\n      path: /backups\n"));
            let cases: &[(&str, &str)] = &[
                ("/data/a.db", "/var/lib/meta/.a.db-sqlite-replicate"),
                ("/data/t/b.db", "/var/lib/meta/t/.b.db-sqlite-replicate"),
            ];
            for (file, want) in cases {
                let db = expand_dir_db(&cfg, Path::new(file)).unwrap();
                assert_eq!(db.meta_path, Some(PathBuf::from(want)), "{key} {file}");
            }
        }
    }

    #[test]
    fn rejects_files_outside_the_directory_and_path_entries() {
        let cfg = dir_db(
            "dbs:\n  - dir: /data\n    pattern: '*.db'\n    replica:\n      path: /backups\n",
        );
        let cases: &[&str] = &["/elsewhere/a.db", "/data", "/data/../a.db"];
        for file in cases {
            assert!(expand_dir_db(&cfg, Path::new(file)).is_err(), "{file}");
        }
        let path_cfg = dir_db("dbs:\n  - path: /data/a.db\n    replica:\n      path: /backups\n");
        assert_eq!(
            expand_dir_db(&path_cfg, Path::new("/data/a.db"))
                .unwrap_err()
                .to_string(),
            "expand_dir_db needs a `dir` entry, not a `path` one"
        );
    }
}
