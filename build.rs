//! Records the git commit nextio is built from as `NEXTIO_GIT_COMMIT`, so
//! a report can name the code that produced it. A build outside a git
//! checkout, or without git, simply has none; a packager may set the
//! variable itself.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=NEXTIO_GIT_COMMIT");
    if std::env::var_os("NEXTIO_GIT_COMMIT").is_some() {
        return;
    }
    let Some(commit) = git(&["rev-parse", "HEAD"]) else {
        println!("cargo:rerun-if-changed=build.rs");
        return;
    };
    println!("cargo:rustc-env=NEXTIO_GIT_COMMIT={commit}");
    // HEAD names the branch; the reflog grows with every commit and
    // checkout, so watching both rebuilds exactly when the commit moves.
    for file in ["HEAD", "logs/HEAD"] {
        if let Some(path) = git(&["rev-parse", "--git-path", file])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
