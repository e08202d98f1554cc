//! A real WebDAV server (WsgiDAV, PyPI `wsgidav` on `cheroot`) on loopback, one per test,
//! killed on drop, serving a temp directory with one Basic-auth login.
//!
//! WsgiDAV comes from `$WSGIDAV_BIN`, else `~/.cache/sqlite-replicate/wsgidav/bin/wsgidav`
//! (scripts/test.sh installs it there in its own venv); tests fail, never skip, without it.
//! [`WsgiDav::kill`] and [`WsgiDav::restart`] stop it (every connection with it) and start
//! it again on the same port with the same files. One fix of ours sits in front of it:
//! see [`READ_CHUNKED_PY`].

#![allow(dead_code)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use engine::storage::webdav::WebDavOptions;

use crate::harness::Proc;

pub const USER: &str = "replicator";
pub const PASSWORD: &str = "dav-secret-7f3a9c";

pub struct WsgiDav {
    proc: Option<Proc>,
    pub dir: tempfile::TempDir,
    pub port: u16,
}

/// A WSGI middleware put first in WsgiDAV's stack: it reads a chunked request body whole
/// and hands it on with its length. WsgiDAV takes a body without `Content-Length` as
/// empty and leaves it unread, and cheroot then reads it as the next request on the
/// connection, answering "400 Bad Request" to whatever the client sends next. Litestream's
/// client sends its PROPFIND bodies chunked, so without this its listings fail at random
/// (every time in `litestream_restores_what_we_write_over_webdav`). Our client always
/// sends `Content-Length`, so this changes nothing for it.
const READ_CHUNKED_PY: &str = r#"import io
from wsgidav.mw.base_mw import BaseMiddleware

class ReadChunkedBody(BaseMiddleware):
    def __call__(self, environ, start_response):
        if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            body = environ["wsgi.input"].read()
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
        return self.next_app(environ, start_response)
"#;

impl WsgiDav {
    /// A server that wants the login ([`USER`], [`PASSWORD`]) on every request.
    pub fn start() -> WsgiDav {
        let dir = tempfile::Builder::new()
            .prefix("sr-wsgidav-")
            .tempdir()
            .unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("data")).unwrap();
        let port = free_port();
        // Basic auth only (what Litestream's client and ours send); no dead-property or
        // lock storage beyond memory; quiet logs.
        std::fs::write(d.join("read_chunked.py"), READ_CHUNKED_PY).unwrap();
        std::fs::write(
            d.join("wsgidav.yaml"),
            format!(
                "host: 127.0.0.1\nport: {port}\nserver: cheroot\n\
                 provider_mapping:\n  \"/\": \"{root}\"\n\
                 http_authenticator:\n  domain_controller: null\n  accept_basic: true\n  \
                 accept_digest: false\n  default_to_digest: false\n\
                 simple_dc:\n  user_mapping:\n    \"*\":\n      \"{USER}\":\n        password: \"{PASSWORD}\"\n\
                 middleware_stack:\n  - read_chunked.ReadChunkedBody\n  - wsgidav.mw.cors.Cors\n  \
                 - wsgidav.error_printer.ErrorPrinter\n  - wsgidav.http_authenticator.HTTPAuthenticator\n  \
                 - wsgidav.dir_browser.WsgiDavDirBrowser\n  - wsgidav.request_resolver.RequestResolver\n\
                 verbose: 1\nlogging:\n  enable_loggers: []\nproperty_manager: null\nlock_storage: true\n",
                root = d.join("data").display(),
            ),
        )
        .unwrap();
        let mut s = WsgiDav {
            proc: None,
            dir,
            port,
        };
        s.spawn();
        s
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let mut cmd = Command::new(wsgidav_bin());
        cmd.arg("--config")
            .arg(d.join("wsgidav.yaml"))
            .env("PYTHONPATH", d);
        self.proc = Some(Proc::spawn_appending("wsgidav", cmd, d.join("wsgidav.log")));
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "wsgidav did not listen:\n{}",
                self.log()
            );
            // Spaces the polls of this wait loop.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (SIGKILL): every connection breaks, requests fail until
    /// [`WsgiDav::restart`].
    pub fn kill(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
        let t = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "wsgidav did not stop"
            );
            // Spaces the polls of this wait loop.
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again on the same port with the same files (after [`WsgiDav::kill`], or
    /// kills it first).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The server's directory for `rel` (served at `/rel`).
    pub fn data(&self, rel: &str) -> PathBuf {
        self.dir.path().join("data").join(rel)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Library options for the replica at `/rel`, with the login.
    pub fn options(&self, rel: &str) -> WebDavOptions {
        WebDavOptions {
            url: self.base(),
            username: Some(USER.into()),
            password: Some(PASSWORD.into()),
            path: format!("/{rel}"),
        }
    }

    /// `webdav://USER:PASSWORD@127.0.0.1:PORT/rel`.
    pub fn url(&self, rel: &str) -> String {
        format!("webdav://{USER}:{PASSWORD}@127.0.0.1:{}/{rel}", self.port)
    }

    /// The replica lines of a config (`replica:` body at 6 spaces), with Litestream's keys,
    /// so the same YAML serves both programs.
    pub fn replica_yaml(&self, rel: &str) -> String {
        format!(
            "      type: webdav\n      webdav-url: {}\n      webdav-username: {USER}\n      webdav-password: {PASSWORD}\n      path: /{rel}\n",
            self.base()
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("wsgidav.log")).unwrap_or_default()
    }
}

impl Drop for WsgiDav {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }
}

/// `$WSGIDAV_BIN`, else `~/.cache/sqlite-replicate/wsgidav/bin/wsgidav`.
pub fn wsgidav_bin() -> PathBuf {
    let p = std::env::var_os("WSGIDAV_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(&std::env::var("HOME").unwrap_or_default())
                .join(".cache/sqlite-replicate/wsgidav/bin/wsgidav")
        });
    assert!(
        p.is_file(),
        "{} is required for the WebDAV tests (scripts/test.sh installs it: a venv at \
         ~/.cache/sqlite-replicate/wsgidav with pip install wsgidav==4.4.0 cheroot==11.1.2)",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
