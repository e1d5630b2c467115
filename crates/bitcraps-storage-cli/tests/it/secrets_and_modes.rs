//! Attack tests for two of the CLI's promises: a password in a URL never reaches stdout,
//! stderr or the logs of a failing command, and every file the store writes is private
//! (0600, directories 0700) whatever the umask.

use crate::common;

use common::Scratch;

/// A password no output may contain.
const SECRET: &str = "hunter2-s3cret-pw";

/// Nothing listens on port 1: every command that connects fails.
fn url() -> String {
    format!("postgres://app:{SECRET}@127.0.0.1:1/games?connect_timeout=1")
}

#[test]
fn failing_commands_never_print_the_password() {
    let s = Scratch::new();
    let url = url();
    let redis = format!("redis://:{SECRET}@127.0.0.1:1");
    let restore_target = s.path("restore-data");
    let runs: Vec<Vec<String>> = vec![
        vec![
            "--url".into(),
            url.clone(),
            "get".into(),
            "c".into(),
            "k".into(),
        ],
        vec!["--url".into(), url.clone(), "list".into(), "c".into()],
        vec!["--url".into(), url.clone(), "stats".into()],
        vec![
            "--url".into(),
            url.clone(),
            "info".into(),
            "c".into(),
            "k".into(),
        ],
        vec!["--url".into(), url.clone(), "maintenance".into()],
        vec!["--url".into(), url.clone(), "backup".into(), "list".into()],
        vec![
            "migrate".into(),
            "--from".into(),
            url.clone(),
            "--to".into(),
            s.path("to").display().to_string(),
        ],
        vec![
            "migrate".into(),
            "--from".into(),
            s.path("from").display().to_string(),
            "--to".into(),
            url.clone(),
        ],
        vec![
            "migrate".into(),
            "--from".into(),
            url.clone(),
            "--to".into(),
            url.clone(),
        ],
        vec![
            "--data".into(),
            restore_target.display().to_string(),
            "backup".into(),
            "restore".into(),
            "20261201T000000000Z-0001".into(),
            "--to".into(),
            url.clone(),
        ],
        // An unsupported scheme carrying a password.
        vec![
            "--url".into(),
            format!("mysql://app:{SECRET}@h/db"),
            "get".into(),
            "c".into(),
            "k".into(),
        ],
        vec![
            "--url".into(),
            format!("postgres://app:{SECRET}@127.0.0.1:1/g?sslmode=bogus"),
            "stats".into(),
        ],
    ];
    for args in runs {
        for log in ["debug", "trace"] {
            let out = s
                .bare()
                .args(&args)
                .env("RUST_LOG", log)
                .env("BITCRAPS_STORAGE_REDIS_URL", &redis)
                .timeout(std::time::Duration::from_secs(60))
                .output()
                .expect("run the binary");
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} should fail");
            assert!(!stderr.is_empty(), "{args:?}: a failure says why");
            assert!(
                !stdout.contains(SECRET) && !stderr.contains(SECRET),
                "{args:?} (RUST_LOG={log}) printed the password:\n{stdout}\n{stderr}"
            );
        }
    }
}

#[cfg(unix)]
#[test]
fn store_backup_and_restore_files_are_private_under_a_permissive_umask() {
    use std::os::unix::fs::PermissionsExt;
    let s = Scratch::new();
    let data = s.path("data");
    let restored = s.path("restored");
    let bin = env!("CARGO_BIN_EXE_bitcraps-storage");
    // umask 000 is stricter than the 022: nothing may rely on the umask at all.
    for umask in ["022", "000"] {
        let _ = std::fs::remove_dir_all(&data);
        let _ = std::fs::remove_dir_all(&restored);
        let script = format!(
            "set -e; umask {umask}; \
             \"$BIN\" --data \"$DATA\" put games g-1 '{{\"point\":6}}'; \
             \"$BIN\" --data \"$DATA\" backup create; \
             id=$(ls \"$DATA/backups\" | sed -n 's/\\.json$//p' | head -n 1); \
             \"$BIN\" --data \"$DATA\" backup restore \"$id\" --to \"$RESTORED\""
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("BIN", bin)
            .env("DATA", &data)
            .env("RESTORED", &restored)
            .env_remove("RUST_LOG")
            .output()
            .expect("run sh");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut checked = 0;
        for root in [&data, &restored] {
            let mut stack = vec![root.clone()];
            while let Some(path) = stack.pop() {
                let meta = std::fs::metadata(&path).expect("stat");
                let mode = meta.permissions().mode() & 0o777;
                if meta.is_dir() {
                    assert_eq!(mode, 0o700, "umask {umask}: {}", path.display());
                    for entry in std::fs::read_dir(&path).expect("read dir") {
                        stack.push(entry.expect("entry").path());
                    }
                } else {
                    assert_eq!(mode, 0o600, "umask {umask}: {}", path.display());
                }
                checked += 1;
            }
        }
        assert!(
            checked >= 6,
            "database, lock, backup archive, manifest, restored copy…"
        );
    }
}
