//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory, `pg_ctl` on a
//! free loopback port, stopped by the postmaster's PID. PostgreSQL refuses to run as root, so
//! under root (CI) the server runs as the unprivileged system user `nxguard-test`, created
//! when missing. Missing binaries fail the test with a message: these tests are never skipped.
//! Self-contained (benches/store.rs includes it too).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

/// The user the server runs as when the tests run as root.
const TEST_USER: &str = "nxguard-test";
/// The role and database nxguard uses, and its password.
pub const ROLE: &str = "nxguard";
pub const PASSWORD: &str = "nxguard-test-password";

pub struct PgCluster {
    pub port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    run_as: Option<&'static str>,
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb`.
fn binaries() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: install the Debian package \
             `postgresql` (apt-get install postgresql; .ci/run does)"
        ),
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn ensure_test_user() {
    let exists = Command::new("id").arg(TEST_USER).output().is_ok_and(|o| o.status.success());
    if !exists {
        let status = Command::new("useradd")
            .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER])
            .status()
            .expect("running useradd");
        // Another test may have created it meanwhile.
        let now = Command::new("id").arg(TEST_USER).output().is_ok_and(|o| o.status.success());
        assert!(status.success() || now, "useradd {TEST_USER} failed");
    }
}

impl PgCluster {
    /// Creates and starts a cluster; `nxguard` / `PASSWORD` owns database `nxguard`, password
    /// authentication over TCP.
    pub fn start() -> PgCluster {
        let bin = binaries();
        let run_as = is_root().then_some(TEST_USER);
        let dir = tempfile::Builder::new().prefix("nxguard-pg").tempdir().unwrap();
        if run_as.is_some() {
            ensure_test_user();
            let status = Command::new("chown").args(["-R", TEST_USER, dir.path().to_str().unwrap()]).status().unwrap();
            assert!(status.success(), "chown of the cluster directory");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = PgCluster { port, dir, bin, run_as };
        let pwfile = cluster.dir.path().join("pwfile");
        std::fs::write(&pwfile, format!("{PASSWORD}\n")).unwrap();
        cluster.chown(&pwfile);
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--pwfile",
                pwfile.to_str().unwrap(),
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ],
        );
        cluster.start_server();
        let mut admin = cluster.client("postgres", "postgres");
        admin.batch_execute(&format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")).unwrap();
        admin.batch_execute(&format!("CREATE DATABASE {ROLE} OWNER {ROLE}")).unwrap();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn chown(&self, path: &Path) {
        if let Some(user) = self.run_as {
            Command::new("chown").args([user, path.to_str().unwrap()]).status().unwrap();
        }
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let output = match self.run_as {
            Some(user) => Command::new("runuser").args(["-u", user, "--"]).arg(&program).args(args).output(),
            None => Command::new(&program).args(args).output(),
        }
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{tool} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts the server (again, after `stop`) on the same port and data.
    pub fn start_server(&self) {
        let data = self.data();
        let log = self.dir.path().join("server.log");
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off -c max_connections=40",
            self.port,
            self.dir.path().display()
        );
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-l", log.to_str().unwrap(), "-o", &options, "-w", "start"]);
    }

    /// The postmaster's PID (first line of postmaster.pid), while it runs.
    fn pid(&self) -> Option<i32> {
        let text = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    /// Stops the server by its PID (fast shutdown) and waits until it is gone.
    pub fn stop(&self) {
        let Some(pid) = self.pid() else { return };
        // SAFETY: signalling the postmaster this helper started.
        unsafe { libc::kill(pid, libc::SIGINT) };
        for _ in 0..300 {
            // SAFETY: signal 0 only asks whether the process exists.
            if unsafe { libc::kill(pid, 0) } != 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("PostgreSQL (pid {pid}) did not stop");
    }

    /// The URL nxguard is given (no password in it).
    pub fn url(&self) -> String {
        format!("postgres://{ROLE}@127.0.0.1:{}/{ROLE}", self.port)
    }

    /// A password file for nxguard, in `dir`.
    pub fn password_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("pg-password");
        std::fs::write(&path, format!("{PASSWORD}\n")).unwrap();
        path
    }

    /// The `[store]` table for nxguard on this cluster.
    pub fn store_toml(&self, dir: &Path, node: &str) -> String {
        format!(
            "[store]\nbackend = \"postgres\"\nurl = {:?}\npassword_file = {:?}\ntls = \"disable\"\nnode = {node:?}\n\
             spool_dir = {:?}\nflush_interval_ms = 50\n",
            self.url(),
            self.password_file(dir),
            dir.join(format!("spool-{node}"))
        )
    }

    /// A client as `user` on `database`.
    pub fn client(&self, user: &str, database: &str) -> postgres::Client {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(user)
            .password(PASSWORD)
            .dbname(database)
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("connecting to the test cluster: {e}"))
    }

    /// A client as nxguard's role on its database.
    pub fn nxguard(&self) -> postgres::Client {
        self.client(ROLE, ROLE)
    }

    /// CPU time (user + system) the server has used so far: the postmaster, its running
    /// children (backends, WAL writer, checkpointer) and those that have ended (benchmarks).
    pub fn cpu(&self) -> Duration {
        let Some(postmaster) = self.pid() else { return Duration::ZERO };
        let mut ticks = 0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // The fields after the command name: state (3), ppid (4), …, utime (14), stime,
            // cutime, cstime (17).
            let Some((_, rest)) = stat.rsplit_once(") ") else { continue };
            let fields: Vec<u64> = rest.split(' ').skip(1).map(|f| f.parse().unwrap_or(0)).collect();
            let pid = entry.file_name().to_str().and_then(|p| p.parse::<u64>().ok());
            if pid == Some(postmaster as u64) && fields.len() > 13 {
                ticks += fields[10..14].iter().sum::<u64>();
            } else if fields.first() == Some(&(postmaster as u64)) && fields.len() > 11 {
                ticks += fields[10] + fields[11];
            }
        }
        // SAFETY: sysconf has no preconditions.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Duration::from_micros(ticks * 1_000_000 / per_second)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
