//! The deployment files under deploy/ stay usable: the config inside the Kubernetes ConfigMap
//! loads and matches the ports the manifest uses, the Containerfile copies files that exist and
//! runs what it exposes, and the systemd unit passes `systemd-analyze verify` (when that tool is
//! installed) and runs commands the binary accepts. The plain TOML files under deploy/ are
//! loaded by tests/it/shipped.rs.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use nxguard::{config::Config, policy};

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The documents of a YAML stream, each checked for the structure every manifest has: no tabs,
/// top-level `apiVersion`, `kind` and `metadata`, and indentation in steps of two spaces.
/// (A structural check instead of a YAML parser: serde_yaml is no longer maintained.)
fn manifests(text: &str) -> Vec<(String, String)> {
    let mut documents = Vec::new();
    for document in text.split("\n---\n") {
        let lines: Vec<&str> =
            document.lines().filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#')).collect();
        if lines.is_empty() {
            continue;
        }
        assert!(!document.contains('\t'), "tab in a YAML document:\n{document}");
        let top = |key: &str| lines.iter().find_map(|l| l.strip_prefix(key)).map(|v| v.trim().to_string());
        let kind = top("kind:").unwrap_or_else(|| panic!("document without kind:\n{document}"));
        assert!(top("apiVersion:").is_some_and(|v| !v.is_empty()), "{kind} without apiVersion");
        assert!(top("metadata:").is_some(), "{kind} without metadata");
        for line in &lines {
            assert_eq!(indent(line) % 2, 0, "{kind}: odd indentation: {line:?}");
        }
        documents.push((kind, document.to_string()));
    }
    documents
}

/// The text of the block scalar `key: |` in `document`, with its indentation removed.
fn block_scalar(document: &str, key: &str) -> String {
    let lines: Vec<&str> = document.lines().collect();
    let start = lines.iter().position(|l| l.trim() == format!("{key}: |")).unwrap_or_else(|| panic!("no {key}: |"));
    let parent = indent(lines[start]);
    let body: Vec<&str> =
        lines[start + 1..].iter().take_while(|l| l.trim().is_empty() || indent(l) > parent).copied().collect();
    let depth = body.iter().filter(|l| !l.trim().is_empty()).map(|l| indent(l)).min().expect("empty block");
    body.iter().map(|l| l.get(depth..).unwrap_or("")).collect::<Vec<_>>().join("\n")
}

fn load(text: &str, origin: &str) -> Config {
    let config = Config::from_toml(text).unwrap_or_else(|e| panic!("{origin}: {e}"));
    policy::load(&config.policy).unwrap_or_else(|e| panic!("{origin}: {e}"));
    config
}

#[test]
fn kubernetes_manifest_config_loads_and_matches_its_ports() {
    let text = read("deploy/kubernetes.yaml");
    let documents = manifests(&text);
    let kinds: Vec<&str> = documents.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, ["ConfigMap", "StatefulSet", "PodDisruptionBudget", "Service", "Secret"]);
    let config = load(&block_scalar(&documents[0].1, "nxguard.toml"), "kubernetes.yaml ConfigMap");

    let deployment = &documents[1].1;
    let dns_port = config.server.udp[0].port();
    assert!(config.server.tcp.iter().all(|a| a.port() == dns_port));
    assert_eq!(deployment.matches(&format!("containerPort: {dns_port}")).count(), 2, "UDP and TCP ports");
    let metrics = config.metrics.listen.expect("metrics.listen: the probes need /health");
    assert!(deployment.contains(&format!("containerPort: {}", metrics.port())));
    assert_eq!(deployment.matches("path: /health").count(), 2, "readiness and liveness probes");
    for required in [
        "replicas: 2",
        "runAsNonRoot: true",
        "readOnlyRootFilesystem: true",
        "allowPrivilegeEscalation: false",
        "drop: [\"ALL\"]",
        "mountPath: /var/lib/nxguard",
        "mountPath: /etc/nxguard",
        "args: [\"serve\", \"--config\", \"/etc/nxguard/nxguard.toml\"]",
    ] {
        assert!(deployment.contains(required), "Deployment lacks {required}");
    }
    // Below 1024 inside the pod it would need NET_BIND_SERVICE, which is dropped.
    assert!(dns_port >= 1024 || deployment.contains("NET_BIND_SERVICE"));
    // Evidence goes to PostgreSQL; the spool sits on the replica's own volume claim, the
    // password comes from the Secret, and no evidence is on an emptyDir.
    assert_eq!(config.store.backend, nxguard::config::StoreBackend::Postgres);
    let spool = config.store.spool_dir.as_ref().expect("store.spool_dir");
    assert!(spool.starts_with("/var/lib/nxguard"), "the spool must be on the writable volume");
    assert!(deployment.contains("volumeClaimTemplates:") && !deployment.contains("emptyDir"));
    let password = config.store.password_file.as_ref().expect("store.password_file");
    assert!(password.starts_with("/etc/nxguard-secret") && deployment.contains("secretName: nxguard-store"));
    assert!(documents[4].1.contains("name: nxguard-store"));

    let service = &documents[3].1;
    assert_eq!(service.matches("port: 53\n").count(), 2, "DNS over UDP and TCP on port 53");
    assert!(service.contains("targetPort: dns-udp") && service.contains("targetPort: dns-tcp"));
    assert!(!service.contains("9153"), "the metrics endpoint has no authentication: not on the Service");
}

#[test]
fn containerfile_builds_locked_and_runs_what_it_exposes() {
    let containerfile = read("deploy/Containerfile");
    let instructions: Vec<&str> =
        containerfile.lines().filter(|l| !l.starts_with('#') && !l.starts_with(' ') && !l.is_empty()).collect();
    let from: Vec<&&str> = instructions.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(from.len(), 2, "a builder and a runtime stage");
    assert!(from[0].contains("rust:1-bookworm") && from[1].contains("debian:bookworm-slim"));
    assert!(containerfile.contains("cargo build --release --locked"));
    assert!(containerfile.contains("ca-certificates"));

    let user = instructions.iter().rev().find_map(|l| l.strip_prefix("USER ")).expect("USER");
    assert!(!["root", "0", "0:0"].contains(&user.trim()), "runs as root");
    let mut config_in_image = None;
    for copy in instructions.iter().filter_map(|l| l.strip_prefix("COPY ")) {
        if copy.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = copy.split_whitespace().collect();
        assert!(repo(parts[0]).exists(), "COPY source {} does not exist", parts[0]);
        if parts[1] == "/etc/nxguard/nxguard.toml" {
            config_in_image = Some(parts[0]);
        }
    }
    let config_in_image = config_in_image.expect("the image has a config at /etc/nxguard/nxguard.toml");
    assert!(containerfile.contains(r#"CMD ["serve", "--config", "/etc/nxguard/nxguard.toml"]"#));
    let config = load(&read(config_in_image), config_in_image);
    let expose = instructions.iter().find_map(|l| l.strip_prefix("EXPOSE ")).expect("EXPOSE");
    for addr in config.server.udp.iter().map(|a| format!("{}/udp", a.port())).chain(
        config
            .server
            .tcp
            .iter()
            .map(|a| format!("{}/tcp", a.port()))
            .chain(config.metrics.listen.map(|a| format!("{}/tcp", a.port()))),
    ) {
        assert!(expose.split_whitespace().any(|p| p == addr), "{addr} is served but not exposed");
    }

    let ignore = read(".dockerignore");
    let ignored: Vec<&str> = ignore.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    assert!(ignored.contains(&"target/"), "the build context would carry target/");
    for needed in ["Cargo.lock", "Cargo.toml", "src/", "domains/", "benches/", "deploy/"] {
        assert!(!ignored.iter().any(|i| needed.starts_with(i.trim_end_matches('/'))), "{needed} is ignored");
    }
}

/// `Key=value` settings of a unit file, in order.
fn unit_settings(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn systemd_unit_is_hardened_and_runs_commands_the_binary_accepts() {
    let unit = read("deploy/nxguard.service");
    let settings = unit_settings(&unit);
    let value = |key: &str| settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    for (key, expected) in [
        ("Type", "notify"),
        ("ExecStart", "/usr/local/bin/nxguard serve --config /etc/nxguard/nxguard.toml"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        ("Restart", "on-failure"),
        ("AmbientCapabilities", "CAP_NET_BIND_SERVICE"),
        ("CapabilityBoundingSet", "CAP_NET_BIND_SERVICE"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("PrivateDevices", "yes"),
        ("ProtectKernelTunables", "yes"),
        ("ProtectKernelModules", "yes"),
        ("ProtectKernelLogs", "yes"),
        ("ProtectControlGroups", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallFilter", "@system-service"),
        ("StateDirectory", "nxguard"),
        ("ConfigurationDirectory", "nxguard"),
    ] {
        assert_eq!(value(key), Some(expected), "{key}");
    }
    assert!(value("User").is_some_and(|u| u != "root") || value("DynamicUser") == Some("yes"));

    // The commands, with the example config in place of /etc/nxguard/nxguard.toml.
    for key in ["ExecStartPre", "ExecStart"] {
        let command = value(key).unwrap_or_else(|| panic!("{key}"));
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        assert_eq!(args[1..], ["--config", "/etc/nxguard/nxguard.toml"]);
        if args[0] == "check" {
            // check tests that the store can be written: the state directory systemd creates
            // (StateDirectory) is a temporary one here.
            let state = tempfile::tempdir().unwrap();
            let example = std::fs::read_to_string(repo("deploy/nxguard.toml")).unwrap();
            let config = state.path().join("nxguard.toml");
            std::fs::write(&config, example.replace("/var/lib/nxguard/", &format!("{}/", state.path().display())))
                .unwrap();
            let out = Command::new(env!("CARGO_BIN_EXE_nxguard"))
                .args(["check", "--config", config.to_str().unwrap()])
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        } else {
            let out = Command::new(env!("CARGO_BIN_EXE_nxguard")).args([args[0], "--help"]).output().unwrap();
            assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--config"));
        }
    }

    verify_with_systemd_analyze(&unit);
}

fn verify_with_systemd_analyze(unit: &str) {
    assert!(
        Command::new("systemd-analyze").arg("--version").output().is_ok(),
        "systemd-analyze is not installed: `apt-get install systemd` (.ci/run does) to verify the units"
    );
    // verify also checks that the executables exist: point it at the binary under test.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nxguard.service");
    std::fs::write(&path, unit.replace("/usr/local/bin/nxguard", env!("CARGO_BIN_EXE_nxguard"))).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Warnings about the unit (unknown keys, bad values) name its file; others are the host's.
    let about_unit: Vec<&str> = stderr.lines().filter(|l| l.contains("nxguard.service")).collect();
    assert!(out.status.success() && about_unit.is_empty(), "systemd-analyze verify:\n{stderr}");
}

#[test]
fn console_unit_runs_the_console_without_privileges() {
    let unit = read("deploy/nxguard-console.service");
    let settings = unit_settings(&unit);
    let value = |key: &str| settings.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    for (key, expected) in [
        ("ExecStart", "/usr/local/bin/nxguard console --config /etc/nxguard/nxguard.toml"),
        ("CapabilityBoundingSet", ""),
        ("AmbientCapabilities", ""),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("StateDirectory", "nxguard"),
        ("SystemCallFilter", "@system-service"),
    ] {
        assert_eq!(value(key), Some(expected), "{key}");
    }
    assert!(value("User").is_some_and(|u| u != "root"));
    let out = Command::new(env!("CARGO_BIN_EXE_nxguard")).args(["console", "--help"]).output().unwrap();
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("--config"));
    // The example config has a console database, so `nxguard console` can start from it.
    let config = Config::read(&repo("deploy/nxguard.toml")).unwrap();
    assert!(config.console.state_path.is_some());
    verify_named_with_systemd_analyze(&unit, "nxguard-console.service");
}

#[test]
fn board_report_timer_runs_monthly_a_report_the_binary_writes() {
    let timer = unit_settings(&read("deploy/nxguard-board-report.timer"));
    assert!(timer.contains(&("OnCalendar".into(), "*-*-01 06:00:00".into())), "{timer:?}");
    assert!(timer.contains(&("Persistent".into(), "true".into())));
    let service = read("deploy/nxguard-board-report.service");
    let exec = unit_settings(&service).into_iter().find(|(k, _)| k == "ExecStart").unwrap().1;
    assert!(
        exec.contains("/usr/local/bin/nxguard report --config /etc/nxguard/nxguard.toml --format html --since 30d")
    );
    assert!(!exec.contains("--with-identities"), "the board report holds no personal data");
    // The same command over an empty store writes a whole HTML page.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("attempts.sqlite");
    nxguard::evidence::store::insert_all(&db, &[], None, "ns1").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nxguard"))
        .args(["report", "--db", db.to_str().unwrap(), "--format", "html", "--since", "30d"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("<!DOCTYPE html>"));
    verify_named_with_systemd_analyze(&service, "nxguard-board-report.service");
}

/// `systemd-analyze verify` of a unit under its own name, with the binary under test in place.
fn verify_named_with_systemd_analyze(unit: &str, name: &str) {
    assert!(
        Command::new("systemd-analyze").arg("--version").output().is_ok(),
        "systemd-analyze is not installed: `apt-get install systemd` (.ci/run does) to verify the units"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, unit.replace("/usr/local/bin/nxguard", env!("CARGO_BIN_EXE_nxguard"))).unwrap();
    let out = Command::new("systemd-analyze").arg("verify").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let about_unit: Vec<&str> = stderr.lines().filter(|l| l.contains(name)).collect();
    assert!(out.status.success() && about_unit.is_empty(), "systemd-analyze verify {name}:\n{stderr}");
}

/// The Grafana dashboard is valid JSON and every metric its panels query is one nxguard exports.
#[test]
fn grafana_dashboard_queries_metrics_that_exist() {
    let dashboard: serde_json::Value = serde_json::from_str(&read("deploy/grafana-dashboard.json")).unwrap();
    let exporter = read("src/ops/metrics.rs");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 4);
    let mut names = Vec::new();
    for target in panels.iter().flat_map(|p| p["targets"].as_array().into_iter().flatten()) {
        let expr = target["expr"].as_str().expect("expr");
        for (at, _) in expr.match_indices("nxguard_") {
            let name: String =
                expr[at..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit()).collect();
            names.push(name);
        }
    }
    for wanted in ["nxguard_queries_total", "nxguard_blocked_total", "nxguard_store_spool_bytes"] {
        assert!(names.iter().any(|n| n == wanted), "the dashboard lacks {wanted}");
    }
    for name in names {
        assert!(exporter.contains(&name), "the dashboard queries {name}, which nxguard does not export");
    }
}
