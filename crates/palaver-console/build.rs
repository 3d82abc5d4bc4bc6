//! Builds the web console from its TypeScript sources in `console/` (at the repository root) into `OUT_DIR`,
//! and writes `assets.rs`, the list of built files that `lib.rs` embeds.
//!
//! Runs `npm ci` (only when `console/node_modules` is missing or older than `package-lock.json`) and
//! `npm run build` (type check + esbuild). Cargo reruns this script only when a console source changes, so a
//! build with nothing changed costs nothing. `PALAVER_CONSOLE_DIST` points at an already built `dist` folder
//! instead (packagers without npm).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let repo = manifest_dir.join("../..");
    let sources = repo.join("console");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-env-changed=PALAVER_CONSOLE_DIST");
    for input in ["src", "index.html", "favicon.svg", "build.mjs", "package.json", "package-lock.json", "tsconfig.json"]
    {
        println!("cargo:rerun-if-changed={}", sources.join(input).display());
    }

    let dist = match std::env::var_os("PALAVER_CONSOLE_DIST") {
        Some(prebuilt) => PathBuf::from(prebuilt),
        None => {
            let dist = out_dir.join("console");
            build_with_npm(&sources, &repo.join(".cache/npm"), &dist);
            dist
        }
    };
    write_asset_list(&dist, &out_dir.join("assets.rs"));
}

fn build_with_npm(sources: &Path, npm_cache: &Path, dist: &Path) {
    let lock = sources.join("package-lock.json");
    let stamp = sources.join("node_modules/.palaver-lock");
    let lock_text = std::fs::read(&lock).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", lock.display())));
    if std::fs::read(&stamp).ok().as_deref() != Some(lock_text.as_slice()) {
        npm(sources, &["ci", "--no-audit", "--no-fund", "--cache", &npm_cache.display().to_string()]);
        std::fs::write(&stamp, &lock_text).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", stamp.display())));
    }
    let _ = std::fs::remove_dir_all(dist);
    npm(sources, &["run", "--silent", "build:to", "--", &dist.display().to_string()]);
}

fn npm(dir: &Path, args: &[&str]) {
    let status = Command::new("npm").args(args).current_dir(dir).status().unwrap_or_else(|e| {
        fail(&format!(
            "cannot run npm ({e}). The web console is built from console/ with Node.js 20+ and npm: install them \
             (e.g. apt-get install nodejs npm), or set PALAVER_CONSOLE_DIST to a folder built with \
             `npm run build` in console/"
        ))
    });
    if !status.success() {
        fail(&format!("`npm {}` failed in {} ({status})", args.join(" "), dir.display()));
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: palaver-console: {message}");
    std::process::exit(1);
}

/// Writes `pub static ASSETS: &[Asset]` with one entry per file of `dist` (flat: index.html and assets/…).
fn write_asset_list(dist: &Path, target: &Path) {
    let mut files = Vec::new();
    collect(dist, dist, &mut files);
    files.sort();
    if !files.iter().any(|f| f == "index.html") {
        fail(&format!("{} has no index.html", dist.display()));
    }
    let mut code = String::from("/// Every built file of the console.\npub static ASSETS: &[Asset] = &[\n");
    for path in &files {
        let absolute = dist.join(path);
        let bytes =
            std::fs::read(&absolute).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", absolute.display())));
        let _ = writeln!(
            code,
            "    Asset {{ path: {path:?}, content_type: {:?}, etag: \"\\\"{:016x}\\\"\", bytes: include_bytes!({:?}) }},",
            content_type(path),
            fnv1a(&bytes),
            absolute.display().to_string(),
        );
    }
    code.push_str("];\n");
    std::fs::write(target, code).unwrap_or_else(|e| fail(&format!("cannot write {}: {e}", target.display())));
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<String>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| fail(&format!("cannot read {}: {e}", dir.display())));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(relative) = path.strip_prefix(root) {
            files.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("map") | Some("json") => "application/json",
        _ => fail(&format!("no content type known for {path}")),
    }
}

/// A content hash for the ETag (FNV-1a: no dependency, and a change detector need not be cryptographic).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}
