//! Builds the web console (console/, served at `/ui/` by src/http/console.rs)
//! into `OUT_DIR`, so that the binary carries it (include_bytes) and nothing
//! is fetched at run time.
//!
//! The tools (esbuild, TypeScript) are the ones console/package-lock.json
//! pins, installed by `npm ci` into `OUT_DIR/npm` when they are missing or
//! the lock changed (the source tree is not written to). Then TypeScript
//! checks the sources and esbuild bundles them with the style sheet; the
//! two files are named by a hash of their content, so that the browser may
//! cache them for good while index.html is asked again every time.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let console = manifest.join("console");
    for watched in [
        "src",
        "index.html",
        "style.css",
        "favicon.svg",
        "package.json",
        "package-lock.json",
        "tsconfig.json",
    ] {
        println!("cargo:rerun-if-changed={}", console.join(watched).display());
    }
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=NPM");

    if let Err(why) = build(&console, &out) {
        eprintln!("\nerror: the web console (console/) could not be built: {why}\n");
        std::process::exit(1);
    }
}

fn build(console: &Path, out: &Path) -> Result<(), String> {
    let tools = install(console, &out.join("npm"))?;
    let bin = tools.join("node_modules").join(".bin");

    run(Command::new(bin.join("tsc"))
        .arg("-p")
        .arg(console.join("tsconfig.json"))
        .arg("--noEmit"))
    .map_err(|e| format!("TypeScript's check failed: {e}"))?;

    let dist = out.join("console-dist");
    let _ = std::fs::remove_dir_all(&dist);
    run(Command::new(bin.join("esbuild"))
        .current_dir(console)
        .args([
            "src/main.ts",
            "style.css",
            "--bundle",
            "--minify",
            "--target=es2020,chrome100,firefox100,safari15",
            "--entry-names=[name]",
            "--log-level=warning",
        ])
        .arg(format!("--outdir={}", dist.display())))
    .map_err(|e| format!("esbuild failed: {e}"))?;

    let script = read(&dist.join("main.js"))?;
    let style = read(&dist.join("style.css"))?;
    let script_name = format!("app-{}.js", digest(&script));
    let style_name = format!("app-{}.css", digest(&style));
    let index = String::from_utf8(read(&console.join("index.html"))?)
        .map_err(|_| "console/index.html is not UTF-8".to_string())?
        .replace("{{SCRIPT}}", &script_name)
        .replace("{{STYLE}}", &style_name);
    if index.contains("{{") {
        return Err("console/index.html has a placeholder build.rs does not fill".into());
    }
    let favicon = read(&console.join("favicon.svg"))?;

    let assets = out.join("console");
    let _ = std::fs::remove_dir_all(&assets);
    std::fs::create_dir_all(&assets).map_err(|e| format!("{}: {e}", assets.display()))?;
    let files: [(&str, &[u8], &str, bool); 4] = [
        (
            "index.html",
            index.as_bytes(),
            "text/html; charset=utf-8",
            false,
        ),
        (
            &script_name,
            &script,
            "text/javascript; charset=utf-8",
            true,
        ),
        (&style_name, &style, "text/css; charset=utf-8", true),
        ("favicon.svg", &favicon, "image/svg+xml", false),
    ];
    let mut table = String::from(
        "/// The console's files: name, content type, whether the name is its content's hash (cached for good), bytes.\n\
         pub const ASSETS: &[(&str, &str, bool, &[u8])] = &[\n",
    );
    for (name, bytes, content_type, hashed) in files {
        let path = assets.join(name);
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        table.push_str(&format!(
            "    ({name:?}, {content_type:?}, {hashed}, include_bytes!({path:?})),\n",
            path = path.display().to_string()
        ));
    }
    table.push_str("];\n");
    let rs = out.join("console_assets.rs");
    std::fs::write(&rs, table).map_err(|e| format!("{}: {e}", rs.display()))?;
    Ok(())
}

/// `npm ci` into `dir` unless the lock installed there is the console's.
fn install(console: &Path, dir: &Path) -> Result<PathBuf, String> {
    let lock = read(&console.join("package-lock.json"))?;
    let stamp = dir.join("installed.lock");
    let installed = std::fs::read(&stamp).ok();
    let present = dir.join("node_modules/.bin/esbuild").exists()
        && dir.join("node_modules/.bin/tsc").exists();
    if present && installed.as_deref() == Some(lock.as_slice()) {
        return Ok(dir.to_path_buf());
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(console.join(file), dir.join(file))
            .map_err(|e| format!("copying console/{file}: {e}"))?;
    }
    let npm = std::env::var("NPM").unwrap_or_else(|_| "npm".into());
    let mut command = Command::new(&npm);
    command
        .current_dir(dir)
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"]);
    match command.output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "`{npm}` was not found: the console's build needs Node.js (18 or later) and npm; install them (`scripts/ensure-deps.sh npm`, or your package manager) and build again"
            ))
        }
        Err(e) => return Err(format!("running `{npm} ci`: {e}")),
        Ok(output) if !output.status.success() => {
            return Err(format!(
                "`{npm} ci` failed ({}):\n{}{}",
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
        Ok(_) => {}
    }
    std::fs::write(&stamp, &lock).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(dir.to_path_buf())
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("{:?}: {e}", command.get_program()))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// A short name for `bytes`: std's SipHash with its fixed keys (stable
/// across builds of one toolchain; it names a cache entry, it protects
/// nothing).
fn digest(bytes: &[u8]) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}
