use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Options, spawn_app, spawn_app_with};

fn pem_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

/// Polls the JWKS until `want` holds (the server reloads keys every second here).
async fn wait_for_jwks(
    app: &crate::helpers::TestApp,
    want: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let mut last = Vec::new();
    for _ in 0..50 {
        last = kids(&app.get_json("/jwks.json").await);
        if want(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("JWKS never reached the expected state; last: {last:?}");
}

#[tokio::test]
async fn first_start_generates_a_private_key_file_that_later_starts_reuse() {
    let app = spawn_app_with(Options {
        fresh_keys: true,
        ..Options::default()
    })
    .await;
    let keys_dir = app.keys_dir();
    let kid = kids(&app.get_json("/jwks.json").await).remove(0);
    assert_eq!(pem_files(&keys_dir), vec![format!("{kid}.pem")]);
    let dir_mode = std::fs::metadata(&keys_dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700, "key directory mode {dir_mode:o}");
    let file = keys_dir.join(format!("{kid}.pem"));
    let file_mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(file_mode, 0o600, "key file mode {file_mode:o}");
    let pem = std::fs::read_to_string(&file).unwrap();
    assert!(
        pem.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8 PEM expected"
    );

    let app = app.restart().await;
    assert_eq!(kids(&app.get_json("/jwks.json").await), vec![kid.clone()]);
    assert_eq!(pem_files(&keys_dir), vec![format!("{kid}.pem")]);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        pem,
        "key file rewritten"
    );
}

#[tokio::test]
async fn rotate_and_retire_take_effect_in_a_running_server() {
    let app = spawn_app_with(Options {
        keys_extra: "reload_seconds = 1".into(),
        ..Options::default()
    })
    .await;
    let old = kids(&app.get_json("/jwks.json").await).remove(0);

    let out = app.cli(&["keys", "rotate"]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let published = wait_for_jwks(&app, |k| k.len() == 2).await;
    let new = published[0].clone();
    assert_ne!(new, old);
    assert!(out.stdout.contains(&new), "{}", out.stdout);
    // The new key is listed first and is the active one; the old one stays published.
    assert_eq!(published, vec![new.clone(), old.clone()]);
    let list = app.cli(&["keys", "list"]).await;
    assert_eq!(list.code(), 0);
    let status_of = |kid: &str| {
        list.stdout
            .lines()
            .find(|l| l.starts_with(kid))
            .unwrap_or_else(|| panic!("{kid} not listed: {}", list.stdout))
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(status_of(&new), "active");
    assert_eq!(status_of(&old), "published");

    // The active key cannot be retired; nothing changes.
    let before = app.snapshot().await;
    let refused = app.cli(&["keys", "retire", &new]).await;
    assert_eq!(refused.code(), 1);
    assert!(refused.stderr.contains("active"), "{}", refused.stderr);
    assert_eq!(
        refused.stderr.trim().lines().count(),
        1,
        "{}",
        refused.stderr
    );
    assert_eq!(app.snapshot().await, before);

    let retired = app.cli(&["keys", "retire", &old]).await;
    assert_eq!(retired.code(), 0, "{}", retired.stderr);
    assert_eq!(
        wait_for_jwks(&app, |k| k.len() == 1).await,
        vec![new.clone()]
    );
    let files = pem_files(&app.keys_dir());
    assert!(files.contains(&format!("{new}.pem")), "{files:?}");
    assert!(
        !files
            .iter()
            .any(|f| f.ends_with(".pem") && !f.starts_with(&new)),
        "{files:?}"
    );
    assert!(
        files.iter().any(|f| f.ends_with(".pem.retired")),
        "{files:?}"
    );

    // Retiring twice is refused, and the state survives a restart.
    assert_eq!(app.cli(&["keys", "retire", &old]).await.code(), 1);
    let app = app.restart().await;
    assert_eq!(kids(&app.get_json("/jwks.json").await), vec![new]);
}

#[tokio::test]
async fn a_corrupt_key_file_stops_start_up_and_is_never_overwritten() {
    let mut app = spawn_app().await;
    let bad = app.keys_dir().join("broken.pem");
    let garbage = b"-----BEGIN PRIVATE KEY-----\nnot base64 at all\n-----END PRIVATE KEY-----\n";
    std::fs::write(&bad, garbage).unwrap();
    let err = app
        .try_build(&Options::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("broken.pem"), "{err}");
    assert!(err.contains("corrupt"), "{err}");
    assert_eq!(std::fs::read(&bad).unwrap(), garbage);
}

#[tokio::test]
async fn a_key_shorter_than_2048_bits_is_refused() {
    let mut app = spawn_app().await;
    let weak = app.keys_dir().join("weak.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:1024",
            "-out",
        ])
        .arg(&weak)
        .status()
        .unwrap();
    assert!(status.success());
    let err = app
        .try_build(&Options::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("weak.pem") && err.contains("2048"), "{err}");
}

#[tokio::test]
async fn a_registered_key_whose_file_vanished_stops_start_up_without_regenerating() {
    let mut app = spawn_app().await;
    let files = pem_files(&app.keys_dir());
    for f in &files {
        std::fs::remove_file(app.keys_dir().join(f)).unwrap();
    }
    let err = app
        .try_build(&Options::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing"), "{err}");
    assert!(
        pem_files(&app.keys_dir()).is_empty(),
        "a key was generated in place of the lost one"
    );
}
