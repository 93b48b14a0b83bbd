//! The scripts that are not run by `cargo test` (they take minutes, or need a baseline binary)
//! still parse: `bash -n` for `scripts/attack.sh`, and for `scripts/attack.py` a byte-compile and
//! its `--help`, which imports every module it uses. A typo there would otherwise surface only
//! on the day someone replays the attacks. The attacks themselves are asserted elsewhere, on
//! counts (`sources`, `udp`, `bounded`, `chat`, `metrics`, `files`); the script measures times
//! and memory, which no test asserts. `scripts/bench-tls.sh` and `scripts/instructions-tls.sh`
//! (minutes, a release build) are parsed too, and refuse a bad argument with their usage before
//! they build anything.

use std::process::Command;

use crate::common;

fn script(name: &str) -> String {
    format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_attack_script_parses() {
    let status = Command::new(common::tool("bash", "bash"))
        .args(["-n", &script("attack.sh")])
        .status()
        .expect("running bash -n");
    assert!(status.success(), "bash -n scripts/attack.sh: {status}");
}

#[test]
#[ignore = "needs python3"]
fn the_attack_driver_compiles_and_prints_its_usage() {
    let python = common::tool("python3", "python3");
    let compiled = Command::new(&python)
        // compile() only: no __pycache__ is written into the source tree.
        .args([
            "-c",
            "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')",
        ])
        .arg(script("attack.py"))
        .status()
        .expect("running python3");
    assert!(compiled.success(), "scripts/attack.py does not compile");
    let usage = Command::new(&python)
        .args([&script("attack.py"), "--help"])
        .output()
        .expect("running python3");
    assert!(
        usage.status.success(),
        "attack.py --help: {:?}",
        usage.status
    );
    let text = String::from_utf8_lossy(&usage.stdout);
    assert!(text.contains("--baseline"), "attack.py --help: {text}");
}

#[test]
fn the_tls_benchmark_scripts_parse_and_refuse_a_bad_argument() {
    let bash = common::tool("bash", "bash");
    for name in ["bench-tls.sh", "instructions-tls.sh"] {
        let status = Command::new(&bash)
            .args(["-n", &script(name)])
            .status()
            .expect("running bash -n");
        assert!(status.success(), "bash -n scripts/{name}: {status}");
        // Arguments are checked before anything is built or started.
        let refused = Command::new(&bash)
            .args([&script(name), "--rounds", "0"])
            .output()
            .expect("running the script");
        assert_eq!(refused.status.code(), Some(2), "{name}: {refused:?}");
        let usage = String::from_utf8_lossy(&refused.stderr);
        assert!(
            usage.starts_with(&format!("usage: scripts/{name}")),
            "stderr: {usage}"
        );
        assert!(refused.stdout.is_empty(), "{refused:?}");
    }
}
