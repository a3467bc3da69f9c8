//! The admin API: deploy, replace and remove components without a restart.

mod common;

use std::io::{BufRead, BufReader};
use std::time::Duration;

use common::*;
use serde_json::Value;

const TOKEN: &str = "test-admin-token";

fn admin(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> reqwest::blocking::Response {
    let mut req = client().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/wasm").body(b);
    }
    req.send().expect("admin request")
}

#[test]
fn admin_api_deploys_validates_and_removes_guards() {
    let sim = sim(&[]);
    let comps = Components::new();
    let gate = gate(
        &format!("{}/v1", sim.url),
        &comps,
        &["--admin-token", TOKEN, "--max-component-bytes", "2000000"],
    );
    let list_url = format!("{}/admin/components", gate.url);
    let put_url = format!("{}/admin/components/guards/banned-words", gate.url);
    let wasm = std::fs::read(component("banned-words")).unwrap();

    // Auth.
    assert_eq!(
        admin(reqwest::Method::GET, &list_url, None, None).status(),
        401
    );
    assert_eq!(
        admin(reqwest::Method::GET, &list_url, Some("wrong"), None).status(),
        401
    );
    let r = admin(reqwest::Method::GET, &list_url, Some(TOKEN), None);
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["guards"], serde_json::json!([]));

    // Events stream, read on a thread.
    let events_url = format!("{}/admin/events", gate.url);
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        let resp = admin(reqwest::Method::GET, &events_url, Some(TOKEN), None);
        for line in BufReader::new(resp).lines() {
            let Ok(line) = line else { break };
            if let Some(data) = line.strip_prefix("data: ")
                && tx.send(serde_json::from_str(data).unwrap()).is_err()
            {
                break;
            }
        }
    });

    let blocked =
        || post_chat(&gate.url, &chat_body("a forbidden-fruit please", false)).status() == 400;
    assert!(!blocked());

    // Deploy: live on return, no restart.
    let r = admin(
        reqwest::Method::PUT,
        &put_url,
        Some(TOKEN),
        Some(wasm.clone()),
    );
    assert_eq!(r.status(), 201);
    let g: Value = r.json().unwrap();
    assert_eq!(g["name"], "banned-words");
    assert_eq!(g["kind"], "guard");
    assert_eq!(g["sha256"].as_str().unwrap().len(), 64);
    assert!(blocked());
    assert!(comps.guards().join("banned-words.wasm").exists());
    let ev = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("reload event");
    assert_eq!(ev["name"], "banned-words");
    assert_eq!(ev["result"], "loaded");

    // Same again: replaced (200).
    assert_eq!(
        admin(
            reqwest::Method::PUT,
            &put_url,
            Some(TOKEN),
            Some(wasm.clone())
        )
        .status(),
        200
    );

    // Invalid uploads are refused before anything changes.
    for bad in [
        b"garbage".to_vec(),
        wasm[..wasm.len() / 2].to_vec(),
        std::fs::read(component("agent")).unwrap(),
    ] {
        let r = admin(reqwest::Method::PUT, &put_url, Some(TOKEN), Some(bad));
        assert_eq!(r.status(), 400);
        let e: Value = r.json().unwrap();
        assert_eq!(e["error"]["code"], "invalid_component", "{e}");
        assert!(blocked(), "old version keeps serving");
        assert_eq!(
            std::fs::read(comps.guards().join("banned-words.wasm")).unwrap(),
            wasm
        );
    }
    // A guard that imports sockets is refused, whatever it does at run time.
    let sneaky = std::fs::read(component("net-sneak")).unwrap();
    let r = admin(reqwest::Method::PUT, &put_url, Some(TOKEN), Some(sneaky));
    assert_eq!(r.status(), 400);
    let e: Value = r.json().unwrap();
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wasi:sockets"),
        "{e}"
    );
    assert!(blocked(), "old version keeps serving");
    // Names cannot escape the folder.
    for name in ["..", ".hidden", "a.b", "x%2F..%2Fy"] {
        let url = format!("{}/admin/components/guards/{name}", gate.url);
        let status = admin(reqwest::Method::PUT, &url, Some(TOKEN), Some(wasm.clone())).status();
        assert!(status == 400 || status == 404, "{name}: {status}");
    }
    // Too big.
    let r = admin(
        reqwest::Method::PUT,
        &put_url,
        Some(TOKEN),
        Some(vec![0u8; 3_000_000]),
    );
    assert_eq!(r.status(), 413);
    // Unknown kind.
    let r = admin(
        reqwest::Method::PUT,
        &format!("{}/admin/components/widgets/x", gate.url),
        Some(TOKEN),
        Some(wasm.clone()),
    );
    assert_eq!(r.status(), 404);

    let list: Value = admin(reqwest::Method::GET, &list_url, Some(TOKEN), None)
        .json()
        .unwrap();
    let g = &list["guards"][0];
    assert_eq!(g["name"], "banned-words");
    assert!(g["invocations"]["ok"].as_u64().unwrap() >= 1);
    assert!(g["loaded_at"].as_u64().unwrap() > 0);

    // Remove.
    assert_eq!(
        admin(reqwest::Method::DELETE, &put_url, Some(TOKEN), None).status(),
        204
    );
    assert!(!blocked());
    assert_eq!(
        admin(reqwest::Method::DELETE, &put_url, Some(TOKEN), None).status(),
        404
    );
}

#[test]
fn admin_api_is_off_without_a_token() {
    let sim = sim(&[]);
    let comps = Components::new();
    let gate = gate(&format!("{}/v1", sim.url), &comps, &[]);
    let r = admin(
        reqwest::Method::GET,
        &format!("{}/admin/components", gate.url),
        Some("x"),
        None,
    );
    assert_eq!(r.status(), 403);
}

#[test]
fn with_a_trusted_key_only_signed_components_load() {
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("k.key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["keygen", "--out"])
        .arg(&keyfile)
        .output()
        .unwrap();
    assert!(out.status.success());
    let public = String::from_utf8(out.stdout).unwrap().trim().to_owned();

    let sim = sim(&[]);
    let comps = Components::new();
    // An unsigned file in the folder is refused.
    comps.add_guard("banned-words", "banned-words", None);
    let gate = gate(
        &format!("{}/v1", sim.url),
        &comps,
        &["--trusted-key", &public, "--admin-token", TOKEN],
    );
    let blocked =
        || post_chat(&gate.url, &chat_body("a forbidden-fruit please", false)).status() == 400;
    assert!(!blocked(), "an unsigned guard must not load");
    let ready: Value = client()
        .get(format!("{}/readyz", gate.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert!(
        ready["rejected"][0]["error"]
            .as_str()
            .unwrap()
            .contains("unsigned"),
        "{ready}"
    );

    // Signing it (NAME.sig beside it) makes it load.
    let wasm_path = comps.guards().join("banned-words.wasm");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wasmgate"))
        .args(["sign", "--key"])
        .arg(&keyfile)
        .arg(&wasm_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(5), blocked),
        "signed guard not loaded"
    );

    // Through the API: unsigned and wrongly signed uploads are refused.
    let wasm = std::fs::read(component("banned-words")).unwrap();
    let url = format!("{}/admin/components/guards/other", gate.url);
    let r = admin(reqwest::Method::PUT, &url, Some(TOKEN), Some(wasm.clone()));
    assert_eq!(r.status(), 400);
    let r = client()
        .put(&url)
        .bearer_auth(TOKEN)
        .header("x-wasmgate-signature", "00".repeat(64))
        .body(wasm.clone())
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let sig = std::fs::read_to_string(comps.guards().join("banned-words.sig")).unwrap();
    let r = client()
        .put(&url)
        .bearer_auth(TOKEN)
        .header("x-wasmgate-signature", sig.trim())
        .body(wasm)
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
}
