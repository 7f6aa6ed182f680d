//! `extrator explain`: every code from the one catalog, unknown codes refused, and a reader that
//! goes away early (`| head`) is not a crash.

use std::io::Read;
use std::process::{Command, Stdio};

use crate::util::{bin, expect_exit};

#[test]
fn explains_each_code_and_refuses_unknown_ones() {
    for code in extrator::core::codes::CATALOG {
        let output = Command::new(bin()).args(["explain", code.code.as_str()]).output().unwrap();
        let (stdout, _) = expect_exit(&output, 0);
        assert_eq!(stdout, extrator::core::codes::explain(&code));
    }
    let output = Command::new(bin()).args(["explain", "1"]).output().unwrap();
    assert!(expect_exit(&output, 0).0.starts_with("Código 01 — Conexão recusada"));
    let output = Command::new(bin()).args(["explain", "42"]).output().unwrap();
    let (_, stderr) = expect_exit(&output, 2);
    assert!(stderr.contains("código desconhecido \"42\"; os códigos são 01, 02"), "{stderr}");
}

#[test]
fn a_closed_stdout_ends_quietly() {
    let mut child =
        Command::new(bin()).arg("explain").stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut first = [0_u8; 8];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // stdout is dropped here: the rest of the output meets a closed pipe.
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(output.stderr.is_empty(), "{}", String::from_utf8_lossy(&output.stderr));
}
