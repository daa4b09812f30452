//! Packaging: the systemd unit passes `systemd-analyze verify` and keeps its
//! hardening, `packaging/build-deb.sh` builds a .deb from Cargo.toml's
//! `[package.metadata.deb]` with the binary, unit, settings file and
//! maintainer scripts, the settings file documents every setting, and
//! `packaging/install.sh` is idempotent. A missing tool fails the test with
//! the command that installs it: nothing is skipped.
//!
//! These checks read the files; `sudo tests/systemd/nspawn-test.sh` (slow,
//! not part of `cargo test`) installs the .deb in a Debian 12 container and
//! runs the unit under a real systemd: readiness, sandbox, watchdog,
//! restarts, clean stop, backup.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::text;

fn require(tool: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "{tool} is needed by this test; install it with: apt-get install -y {package}"
    );
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn unit_text() -> String {
    fs::read_to_string(common::repo_root().join("maia-sync.service")).unwrap()
}

/// A copy of `unit` whose ExecStart names `binary` (verify insists that
/// the program exists), written into `dir`.
fn unit_copy(unit: &str, binary: &Path, dir: &Path) -> PathBuf {
    let exec = format!("ExecStart={}", binary.display());
    let body: Vec<String> = unit
        .lines()
        .map(|l| {
            if l.starts_with("ExecStart=") {
                exec.clone()
            } else {
                l.to_string()
            }
        })
        .collect();
    let path = dir.join("maia-sync.service");
    fs::write(&path, body.join("\n") + "\n").unwrap();
    path
}

/// `systemd-analyze verify` reports bad values as warnings with exit 0, so
/// silence is the pass condition.
fn verify_unit(path: &Path) {
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(path)
        .output()
        .expect("systemd-analyze");
    let err = text(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "{}: {err}",
        path.display()
    );
}

#[test]
fn the_unit_verifies_and_keeps_its_hardening() {
    require("systemd-analyze", "systemd");
    let dir = common::TempDir::new("svc-unit");
    let unit = unit_text();
    let copy = unit_copy(&unit, Path::new(common::BIN), dir.path());
    verify_unit(&copy);

    // The brief's settings, each present as written.
    for line in [
        "Type=notify",
        "ExecStart=/usr/bin/maia-sync",
        "Environment=DB_PATH=/var/lib/maia-sync/sync.db",
        "EnvironmentFile=-/etc/default/maia-sync",
        "StateDirectory=maia-sync",
        "DynamicUser=yes",
        "Restart=on-failure",
        "UMask=0077",
        "LimitNOFILE=65536",
        "ProtectSystem=strict",
        "ReadOnlyPaths=/run /dev",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "MemoryDenyWriteExecute=yes",
        "SystemCallFilter=@system-service",
        "SystemCallArchitectures=native",
        "LockPersonality=yes",
        "RestrictRealtime=yes",
        "RestrictNamespaces=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "CapabilityBoundingSet=",
        "WantedBy=multi-user.target",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line:?}");
    }
    // The stop timeout covers the server's own shutdown timeout, and the
    // watchdog leaves room for pings at half its period.
    let secs = |key: &str| -> u64 {
        unit.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("unit lacks {key}N"))
    };
    assert!(secs("TimeoutStopSec=") * 1000 > 10_000 + 5_000);
    assert!(secs("WatchdogSec=") >= 10);
    // The backup recipe in the comment runs as root: `systemd-run -p
    // DynamicUser=yes` would hand the live state directory to another user.
    assert!(
        unit.contains(
            "\n#   sudo maia-sync backup /root/sync-backup.db --db /var/lib/private/maia-sync/sync.db\n"
        ),
        "the unit's comment lacks the root backup command"
    );
    assert!(!unit.contains("systemd-run --pipe"), "{unit}");

    // systemd's own exposure score for the sandbox: keep it "OK" or better.
    let out = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&copy));
    let report = text(&out.stdout);
    let score: f64 = report
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for maia-sync.service: ")
                .nth(1)
        })
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in {report}"));
    assert!(score <= 2.0, "exposure {score}:\n{report}");
}

#[test]
fn the_deb_holds_binary_unit_settings_and_scripts() {
    require("dpkg-deb", "dpkg");
    require("python3", "python3");
    require("systemd-analyze", "systemd");
    let dir = common::TempDir::new("svc-deb");
    let out = run(
        Command::new(common::repo_root().join("packaging/build-deb.sh"))
            .args(["--fast", "--binary", common::BIN, "--out"])
            .arg(dir.path()),
    );
    let deb = PathBuf::from(text(&out.stdout).trim());
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        name.starts_with(&format!("maia-sync_{version}-1_")),
        "{name}"
    );

    let listing = text(&run(Command::new("dpkg-deb").arg("-c").arg(&deb)).stdout);
    for (path, mode) in [
        ("./usr/bin/maia-sync", "-rwxr-xr-x root/root"),
        (
            "./usr/lib/systemd/system/maia-sync.service",
            "-rw-r--r-- root/root",
        ),
        ("./etc/default/maia-sync", "-rw-r--r-- root/root"),
        (
            "./usr/share/doc/maia-sync/examples/nginx-maia-sync.conf",
            "-rw-r--r--",
        ),
        ("./usr/share/doc/maia-sync/examples/Caddyfile", "-rw-r--r--"),
        ("./usr/share/doc/maia-sync/copyright", "-rw-r--r--"),
    ] {
        let line = listing
            .lines()
            .find(|l| l.ends_with(&format!(" {path}")))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"));
        assert!(line.starts_with(mode), "{line}");
    }

    let info =
        |part: &str| text(&run(Command::new("dpkg-deb").arg("-I").arg(&deb).arg(part)).stdout);
    let control = info("control");
    for needle in [
        "Package: maia-sync\n",
        &format!("Version: {version}-1\n"),
        "Section: net\n",
        "Depends: libc6",
        "Description: Sync server for Jazz apps",
    ] {
        assert!(
            control.contains(needle),
            "control lacks {needle:?}:\n{control}"
        );
    }
    assert_eq!(info("conffiles").trim(), "/etc/default/maia-sync");
    let postinst = info("postinst");
    assert!(
        postinst.contains("deb-systemd-helper enable 'maia-sync.service'"),
        "{postinst}"
    );
    assert!(postinst.contains("_action=restart"), "{postinst}");
    assert!(info("prerm").contains("deb-systemd-invoke stop 'maia-sync.service'"));
    assert!(info("postrm").contains("deb-systemd-helper purge 'maia-sync.service'"));
    for script in ["postinst", "prerm", "postrm"] {
        run(Command::new("sh").arg("-n").arg("-c").arg(info(script)));
    }

    // The files inside are the repository's, and the unit still verifies.
    let root = dir.path().join("root");
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root));
    let repo = common::repo_root();
    let same = |inside: &str, outside: &Path| {
        assert_eq!(
            fs::read(root.join(inside)).unwrap(),
            fs::read(outside).unwrap(),
            "{inside}"
        );
    };
    same("usr/bin/maia-sync", Path::new(common::BIN));
    same(
        "usr/lib/systemd/system/maia-sync.service",
        &repo.join("maia-sync.service"),
    );
    same(
        "etc/default/maia-sync",
        &repo.join("packaging/default/maia-sync"),
    );
    let unit = fs::read_to_string(root.join("usr/lib/systemd/system/maia-sync.service")).unwrap();
    let check_dir = dir.path().join("verify");
    fs::create_dir_all(&check_dir).unwrap();
    verify_unit(&unit_copy(
        &unit,
        &root.join("usr/bin/maia-sync"),
        &check_dir,
    ));
}

#[test]
fn the_settings_file_lists_every_setting_with_its_default() {
    let help = text(&run(Command::new(common::BIN).arg("--help")).stdout);
    let file = fs::read_to_string(common::repo_root().join("packaging/default/maia-sync")).unwrap();
    let mut seen = 0;
    for line in help.lines().filter(|l| l.contains("[env ")) {
        let var = line
            .split("[env ")
            .nth(1)
            .unwrap()
            .split(']')
            .next()
            .unwrap();
        let default = line
            .split("(default: ")
            .nth(1)
            .unwrap()
            .trim_end_matches(')');
        // The unit sets DB_PATH; "none" is an empty list.
        let shown = match var {
            "DB_PATH" => "/var/lib/maia-sync/sync.db",
            _ if default == "none" => "",
            _ => default,
        };
        let want = format!("#{var}={shown}");
        assert!(
            file.lines().any(|l| l == want),
            "settings file lacks {want:?}"
        );
        seen += 1;
    }
    assert!(seen >= 12, "only {seen} settings in --help");
    // Nothing is set by default: the file only documents.
    assert!(
        !file.lines().any(|l| !l.is_empty() && !l.starts_with('#')),
        "an uncommented line in the settings file"
    );
}

/// `install.sh --prefix` twice: the second run changes nothing, keeps an
/// edited settings file, and runs systemctl as documented (through a
/// stand-in that records its arguments).
#[test]
fn install_sh_is_idempotent() {
    let dir = common::TempDir::new("svc-install");
    let prefix = dir.path().join("root");
    let log = dir.path().join("systemctl.log");
    let fake = dir.path().join("systemctl");
    // Reports the service as running from the second call of is-active on.
    fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$*\" >> {log}\n\
             if [ \"$1\" = is-active ]; then [ -f {log}.seen ] && exit 0; touch {log}.seen; exit 3; fi\n",
            log = log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let script = common::repo_root().join("packaging/install.sh");
    let install = |binary: &Path| {
        let out = run(Command::new(&script)
            .arg("--binary")
            .arg(binary)
            .arg("--prefix")
            .arg(&prefix)
            .env("SYSTEMCTL", &fake));
        text(&out.stdout)
    };

    let first = install(Path::new(common::BIN));
    assert!(first.contains("installed  "), "{first}");
    let bin = prefix.join("usr/local/bin/maia-sync");
    let unit = prefix.join("etc/systemd/system/maia-sync.service");
    let settings = prefix.join("etc/default/maia-sync");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(mode(&unit), 0o644);
    assert_eq!(mode(&settings), 0o644);
    let unit_body = fs::read_to_string(&unit).unwrap();
    assert!(
        unit_body.contains("\nExecStart=/usr/local/bin/maia-sync\n"),
        "{unit_body}"
    );
    require("systemd-analyze", "systemd");
    let check_dir = dir.path().join("verify");
    fs::create_dir_all(&check_dir).unwrap();
    verify_unit(&unit_copy(&unit_body, &bin, &check_dir));

    fs::write(&settings, "PORT=5000\n").unwrap();
    let second = install(Path::new(common::BIN));
    assert_eq!(second.matches("unchanged  ").count(), 2, "{second}");
    assert!(second.contains("kept       "), "{second}");
    assert_eq!(fs::read_to_string(&settings).unwrap(), "PORT=5000\n");

    // An upgrade (a different binary) while running restarts the service.
    let newer = dir.path().join("maia-sync-newer");
    fs::copy(common::BIN, &newer).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(&newer)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"\0"))
        .unwrap();
    let third = install(&newer);
    assert!(
        third.contains(&format!("installed  {}", bin.display())),
        "{third}"
    );
    let calls = fs::read_to_string(&log).unwrap();
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            "is-active --quiet maia-sync",
            "daemon-reload",
            "enable --now maia-sync",
            "is-active --quiet maia-sync",
            "daemon-reload",
            "enable --now maia-sync",
            "is-active --quiet maia-sync",
            "daemon-reload",
            "enable --now maia-sync",
            "restart maia-sync",
        ],
        "{calls}"
    );
}
