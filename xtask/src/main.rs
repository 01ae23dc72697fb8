//! CivicBase task runner: the single entry point that runs every check.
//!
//! Invoke it through the cargo alias defined in `.cargo/config.toml`:
//!
//! ```text
//! cargo xtask <command>
//! ```
//!
//! `cargo xtask ci` is what continuous integration (and `.ci/run`) executes;
//! `cargo xtask help` lists every command. The runner depends on nothing but
//! `anyhow` so that it compiles in seconds.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use std::{env, fs, io};

use anyhow::{bail, Context as _, Result};

/// The wasm target the core is compiled to and tested on.
const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Package name of the pure core crate whose invariants are enforced.
const CORE_PACKAGE: &str = "civicbase-core";

/// Package name of the Web Worker engine, whose tests run in headless Chromium.
const WORKER_PACKAGE: &str = "civicbase-worker";

/// Package name of the browser app.
const APP_PACKAGE: &str = "civicbase-app";

/// The signaling server's package (it also serves the built app).
const SIGNALING_PACKAGE: &str = "civicbase-signaling";

/// The Trunk release that builds with this toolchain (0.22 needs a newer rustc).
const TRUNK_VERSION: &str = "0.21.14";

/// Where the end-to-end tests and their npm dependencies live.
const E2E_DIR: &str = "tests/e2e";

/// Where Debian's `chromium` package puts the browser.
const CHROMIUM: &str = "/usr/bin/chromium";

/// Where Debian's `chromium-driver` package puts ChromeDriver, which
/// `wasm-bindgen-test-runner` drives (through the `CHROMEDRIVER` variable).
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Package name of the optional benchmark crate (present iff `bench/Cargo.toml` exists).
const BENCH_PACKAGE: &str = "civicbase-bench";

/// Environment variable read by the convergence harness (number of schedules to explore).
const SCHEDULES_VAR: &str = "CIVICBASE_SCHEDULES";

/// Value given to [`SCHEDULES_VAR`] during `cargo xtask ci` when `CI` is set and
/// the variable is not already set.
const CI_SCHEDULES: &str = "2000";

/// Usage text printed by `cargo xtask help`.
const USAGE: &str = "\
CivicBase task runner

USAGE:
    cargo xtask <COMMAND>

COMMANDS:
    ci                Run every check, stopping at the first failure:
                      setup, fmt, clippy (native), clippy (wasm32: core
                      and worker), check-invariants, tests (native),
                      tests (wasm32), browser tests (worker).
                      With CI set, CIVICBASE_SCHEDULES defaults to 2000.
    setup             Install what the checks need (idempotent, fast when done):
                      the wasm32-unknown-unknown target, a
                      wasm-bindgen-test-runner matching Cargo.lock, and
                      Chromium and ChromeDriver (apt-get, with sudo when
                      not root) if /usr/bin/chromium or
                      /usr/bin/chromedriver is missing.
    check-invariants  Enforce the architecture invariant: civicbase-core does
                      no I/O, reads no clock or RNG, and depends on no
                      leptos / web-sys / js-sys / wasm-bindgen / tokio / axum /
                      getrandom / rand crates.
    test              Run the native test suite, then the core's wasm32 tests
                      (under Node via wasm-bindgen-test-runner), then the
                      worker's tests in headless Chromium (a Web Worker).
                      CIVICBASE_SCHEDULES is passed through unchanged.
    run               Set up what is missing, build the browser app and serve
                      it, with the signaling server, on
                      http://127.0.0.1:8080/ (PORT to change), and start an
                      anchor peer on civicbase-data/anchor (give it spaces
                      with CIVICBASE_ANCHOR_JOIN=<invite link>). Ctrl-C
                      stops both. `run --signaling-only`: no anchor.
    bench-browser     Browser benchmarks in headless Chromium (cold start,
                      IndexedDB ingest, tab-to-tab latency, bytes shipped),
                      each against a raw baseline in the same run.
    bench             Run the benchmarks (cargo bench -p civicbase-bench).
    fuzz-build        Build the fuzz targets with cargo-fuzz on nightly, if
                      fuzz/ and cargo-fuzz exist (not part of ci).
    help              Print this text.
";

/// Entry point: dispatches to a subcommand and turns errors into exit code 1.
fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parses the command line by hand and runs the selected subcommand.
fn run() -> Result<()> {
    let mut args = env::args().skip(1);
    let command = args.next();
    let extra: Vec<String> = args.collect();
    // `run` takes one flag; every other command takes none.
    let signaling_only = command.as_deref() == Some("run") && extra == ["--signaling-only"];
    if !extra.is_empty() && !signaling_only {
        bail!(
            "unexpected argument(s) after the command: {}\n\n{USAGE}",
            extra.join(" ")
        );
    }
    let Some(command) = command else {
        print!("{USAGE}");
        return Ok(());
    };
    if matches!(command.as_str(), "help" | "-h" | "--help") {
        print!("{USAGE}");
        return Ok(());
    }
    let ctx = Ctx::new()?;
    match command.as_str() {
        "ci" => ci(&ctx),
        "setup" => setup(&ctx),
        "check-invariants" => check_invariants(&ctx),
        "test" => test(&ctx),
        "bench" => bench(&ctx),
        "run" => run_demo(&ctx, signaling_only),
        "bench-browser" => bench_browser(&ctx),
        "fuzz-build" => fuzz_build(&ctx),
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
}

// ---------------------------------------------------------------------------
// Process plumbing
// ---------------------------------------------------------------------------

/// What every command needs: where the workspace is and which `PATH` to give
/// child processes.
struct Ctx {
    /// Workspace root (the directory holding the top-level `Cargo.toml`).
    root: PathBuf,
    /// `PATH` for child processes, with the cargo bin directory in front.
    path: OsString,
}

impl Ctx {
    /// Locates the workspace root and prepares a `PATH` that contains the
    /// cargo bin directory (`$CARGO_HOME/bin`, else `$HOME/.cargo/bin`), where
    /// `cargo install` puts `wasm-bindgen-test-runner`.
    fn new() -> Result<Self> {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir
            .parent()
            .context("xtask's manifest directory has no parent")?
            .to_path_buf();

        let mut dirs: Vec<PathBuf> = env::var_os("PATH")
            .map(|p| env::split_paths(&p).collect())
            .unwrap_or_default();
        if let Some(bin) = cargo_bin_dir() {
            if !dirs.contains(&bin) {
                dirs.insert(0, bin);
            }
        }
        let path = env::join_paths(dirs).context("cannot build PATH for child processes")?;
        Ok(Self { root, path })
    }

    /// Finds an executable on the child `PATH`.
    fn which(&self, program: &str) -> Option<PathBuf> {
        env::split_paths(&self.path)
            .map(|dir| dir.join(program))
            .find(|candidate| is_executable(candidate))
    }

    /// A command for `program`, run from the workspace root with the child `PATH`.
    fn command(&self, program: &str) -> Command {
        let exe = self
            .which(program)
            .unwrap_or_else(|| PathBuf::from(program));
        let mut cmd = Command::new(exe);
        cmd.current_dir(&self.root).env("PATH", &self.path);
        cmd
    }

    /// A `cargo` command with the given arguments.
    fn cargo(&self, args: &[&str]) -> Command {
        let mut cmd = self.command("cargo");
        cmd.args(args);
        cmd
    }

    /// Whether a file exists at `relative` under the workspace root.
    fn has_file(&self, relative: &str) -> bool {
        self.root.join(relative).is_file()
    }

    /// Whether the optional benchmark crate exists.
    fn has_bench_crate(&self) -> bool {
        self.has_file("bench/Cargo.toml")
    }
}

/// The directory `cargo install` writes binaries to.
fn cargo_bin_dir() -> Option<PathBuf> {
    if let Some(home) = env::var_os("CARGO_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(home).join("bin"));
    }
    env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .map(|home| PathBuf::from(home).join(".cargo").join("bin"))
}

/// Whether `path` is a file the current user may execute.
#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `path` is a file the current user may execute.
#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file() || path.with_extension("exe").is_file()
}

/// Renders a command the way a user would type it (program name without its directory).
fn display(cmd: &Command) -> String {
    let program = Path::new(cmd.get_program())
        .file_name()
        .unwrap_or_else(|| cmd.get_program());
    std::iter::once(program)
        .chain(cmd.get_args())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes an argument for display if it contains whitespace or is empty.
fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if s.is_empty() || s.chars().any(char::is_whitespace) {
        format!("'{s}'")
    } else {
        s.into_owned()
    }
}

/// Runs a command with inherited stdio, failing with an error naming it.
fn run_cmd(cmd: &mut Command) -> Result<()> {
    let shown = display(cmd);
    println!("$ {shown}");
    let status = cmd
        .status()
        .with_context(|| format!("failed to start `{shown}` (is it installed?)"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs a command and returns its stdout; stderr goes to the terminal.
fn capture(cmd: &mut Command) -> Result<String> {
    let shown = display(cmd);
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("failed to start `{shown}` (is it installed?)"))?;
    if !output.status.success() {
        bail!("`{shown}` failed ({})", output.status);
    }
    String::from_utf8(output.stdout).with_context(|| format!("`{shown}` printed non-UTF-8 output"))
}

/// Formats a wall time as `12.3s` or `4m05.6s`.
fn fmt_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let minutes = (secs / 60.0).floor();
        format!("{}m{:04.1}s", minutes as u64, secs - minutes * 60.0)
    }
}

// ---------------------------------------------------------------------------
// setup
// ---------------------------------------------------------------------------

/// `cargo xtask setup`: installs the wasm32 target, a matching
/// `wasm-bindgen-test-runner`, and Chromium with ChromeDriver. Does nothing
/// (quickly) when all are present.
fn setup(ctx: &Ctx) -> Result<()> {
    ensure_wasm_target(ctx)?;
    ensure_test_runner(ctx)?;
    ensure_chromium(ctx)?;
    ensure_trunk(ctx)?;
    ensure_e2e_deps(ctx)
}

/// Installs Trunk [`TRUNK_VERSION`] unless that exact version is on PATH.
fn ensure_trunk(ctx: &Ctx) -> Result<()> {
    let have = ctx
        .which("trunk")
        .and_then(|_| capture(ctx.command("trunk").arg("--version")).ok())
        .unwrap_or_default();
    if have.trim() == format!("trunk {TRUNK_VERSION}") {
        println!("setup: trunk {TRUNK_VERSION} is installed");
    } else {
        println!("setup: installing trunk {TRUNK_VERSION} (several minutes, once)");
        run_cmd(&mut ctx.cargo(&["install", "trunk", "--version", TRUNK_VERSION, "--locked"]))?;
    }
    Ok(())
}

/// Installs the end-to-end tests' npm dependencies (playwright-core, which
/// drives the system Chromium and never downloads a browser).
fn ensure_e2e_deps(ctx: &Ctx) -> Result<()> {
    let installed = ["playwright-core", "jsqr", "pngjs"]
        .iter()
        .all(|p| ctx.has_file(&format!("{E2E_DIR}/node_modules/{p}/package.json")));
    if installed {
        println!("setup: end-to-end test dependencies are installed");
        return Ok(());
    }
    if ctx.which("npm").is_none() {
        bail!("npm is missing; install Node.js (20 or later) for the end-to-end tests");
    }
    let mut cmd = ctx.command("npm");
    cmd.args(["ci", "--no-audit", "--no-fund"])
        .current_dir(ctx.root.join(E2E_DIR));
    run_cmd(&mut cmd)
}

/// Runs `apt-get install -y` for `packages`, through `sudo` unless root.
fn apt_install(ctx: &Ctx, packages: &[&str]) -> Result<()> {
    if ctx.which("apt-get").is_none() {
        bail!(
            "{} missing and there is no apt-get to install it",
            packages.join(", ")
        );
    }
    let root = capture(ctx.command("id").arg("-u"))?.trim() == "0";
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            ctx.command("apt-get")
        } else {
            let mut cmd = ctx.command("sudo");
            cmd.arg("apt-get");
            cmd
        };
        cmd.args(args);
        cmd
    };
    println!("setup: installing {}", packages.join(", "));
    run_cmd(&mut apt(&["update"]))?;
    let mut args = vec!["install", "-y"];
    args.extend_from_slice(packages);
    run_cmd(&mut apt(&args))
}

/// Builds the browser app into `dist/` with Trunk, in the `wasm-release`
/// profile of the workspace (optimised for size, cryptography for speed).
fn build_app(ctx: &Ctx) -> Result<()> {
    let mut cmd = ctx.command("trunk");
    cmd.args(["build", "--release"])
        .env("TRUNK_SKIP_VERSION_CHECK", "true")
        .current_dir(&ctx.root);
    run_cmd(&mut cmd)
}

/// Runs the end-to-end journeys (Node's test runner driving headless
/// Chromium through playwright-core) against `dist/`.
fn test_e2e(ctx: &Ctx) -> Result<()> {
    if !ctx.has_file("dist/index.html") {
        build_app(ctx)?;
    }
    // The device-to-device journeys run the real signaling server and anchor.
    run_cmd(ctx.command("cargo").args([
        "build",
        "-p",
        "civicbase-signaling",
        "-p",
        "civicbase-anchor",
    ]))?;
    let mut cmd = ctx.command("node");
    cmd.args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .current_dir(ctx.root.join(E2E_DIR));
    run_cmd(&mut cmd)
}

/// Installs Debian's `chromium` and `chromium-driver` unless both
/// [`CHROMIUM`] and [`CHROMEDRIVER`] exist, through `sudo` unless root.
fn ensure_chromium(ctx: &Ctx) -> Result<()> {
    if Path::new(CHROMIUM).is_file() && Path::new(CHROMEDRIVER).is_file() {
        println!("setup: {CHROMIUM} and {CHROMEDRIVER} are installed");
        return Ok(());
    }
    if ctx.which("apt-get").is_none() {
        println!("setup: warning: {CHROMIUM} or {CHROMEDRIVER} is missing and there is no apt-get; install Chromium and a matching ChromeDriver there for the browser tests");
        return Ok(());
    }
    apt_install(ctx, &["chromium", "chromium-driver"])
}

/// Adds the wasm32 target through rustup unless it is already installed.
fn ensure_wasm_target(ctx: &Ctx) -> Result<()> {
    if ctx.which("rustup").is_none() {
        println!("setup: rustup not found; assuming the {WASM_TARGET} target is installed");
        return Ok(());
    }
    let installed = capture(
        ctx.command("rustup")
            .args(["target", "list", "--installed"]),
    )?;
    if installed.lines().any(|line| line.trim() == WASM_TARGET) {
        println!("setup: target {WASM_TARGET} is installed");
        return Ok(());
    }
    println!("setup: installing target {WASM_TARGET}");
    run_cmd(ctx.command("rustup").args(["target", "add", WASM_TARGET]))
}

/// Installs `wasm-bindgen-cli` at the exact version of `wasm-bindgen` in
/// `Cargo.lock` unless `wasm-bindgen-test-runner` on `PATH` already matches.
fn ensure_test_runner(ctx: &Ctx) -> Result<()> {
    let lock_path = ctx.root.join("Cargo.lock");
    if !lock_path.exists() {
        println!("setup: no Cargo.lock yet; resolving the workspace to create it");
        let resolved = ctx
            .cargo(&["metadata", "--format-version", "1"])
            .stdout(Stdio::null())
            .status();
        if !resolved.is_ok_and(|status| status.success()) {
            println!("setup: warning: could not resolve the workspace (see above)");
        }
    }
    let lock = match fs::read_to_string(&lock_path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            println!("setup: no Cargo.lock; skipping wasm-bindgen-test-runner");
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", lock_path.display())),
    };
    let versions = locked_versions(&lock, "wasm-bindgen");
    let Some(wanted) = versions.last() else {
        println!(
            "setup: Cargo.lock has no wasm-bindgen package yet; skipping wasm-bindgen-test-runner"
        );
        return Ok(());
    };
    if versions.len() > 1 {
        println!(
            "setup: warning: Cargo.lock has several wasm-bindgen versions ({}); using {wanted}",
            versions.join(", ")
        );
    }
    match installed_runner_version(ctx) {
        Some(have) if have == *wanted => {
            println!("setup: wasm-bindgen-test-runner {have} matches Cargo.lock");
            return Ok(());
        }
        Some(have) => println!(
            "setup: wasm-bindgen-test-runner is {have} but Cargo.lock has wasm-bindgen {wanted}; reinstalling"
        ),
        None => println!("setup: wasm-bindgen-test-runner not found; installing {wanted}"),
    }
    // Not `--locked`: wasm-bindgen-cli's own lock file does not build here.
    run_cmd(&mut ctx.cargo(&["install", "wasm-bindgen-cli", "--version", wanted]))?;
    match installed_runner_version(ctx) {
        Some(have) if have == *wanted => {
            println!("setup: wasm-bindgen-test-runner {have} installed");
            Ok(())
        }
        Some(have) => bail!("installed wasm-bindgen-cli {wanted}, but wasm-bindgen-test-runner on PATH reports {have}"),
        None => bail!("installed wasm-bindgen-cli {wanted}, but wasm-bindgen-test-runner is not on PATH"),
    }
}

/// The version `wasm-bindgen-test-runner --version` reports, if it runs.
fn installed_runner_version(ctx: &Ctx) -> Option<String> {
    ctx.which("wasm-bindgen-test-runner")?;
    let output = ctx
        .command("wasm-bindgen-test-runner")
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    parse_runner_version(&String::from_utf8_lossy(&output.stdout))
}

/// Extracts `0.2.100` from `wasm-bindgen-test-runner 0.2.100`.
fn parse_runner_version(output: &str) -> Option<String> {
    output
        .split_whitespace()
        .map(|token| token.trim_start_matches('v'))
        .find(|token| {
            token.contains('.') && token.chars().next().is_some_and(|c| c.is_ascii_digit())
        })
        .map(str::to_owned)
}

/// Versions of every `[[package]]` named `name` in a `Cargo.lock`, in file
/// order (cargo sorts them ascending, so the last one is the newest).
fn locked_versions(lock: &str, name: &str) -> Vec<String> {
    /// The quoted value of a `key = "value"` line, if the line has that key.
    fn value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
        let rest = line.strip_prefix(key)?.trim_start().strip_prefix('=')?;
        rest.trim().strip_prefix('"')?.strip_suffix('"')
    }

    let mut versions = Vec::new();
    let mut current_name: Option<&str> = None;
    let mut current_version: Option<&str> = None;
    let mut flush = |n: Option<&str>, v: Option<&str>| {
        if let (Some(n), Some(v)) = (n, v) {
            if n == name {
                versions.push(v.to_owned());
            }
        }
    };
    for line in lock.lines().map(str::trim) {
        if line.starts_with('[') {
            flush(current_name.take(), current_version.take());
        } else if let Some(n) = value(line, "name") {
            current_name = Some(n);
        } else if let Some(v) = value(line, "version") {
            current_version = Some(v);
        }
    }
    flush(current_name, current_version);
    versions
}

// ---------------------------------------------------------------------------
// check-invariants
// ---------------------------------------------------------------------------

/// Crates the core must not depend on, matched by exact package name.
/// (`rand_core` is allowed: the dalek crates use it for traits only, and the
/// core passes randomness in rather than reading it.)
const FORBIDDEN_EXACT: &[&str] = &[
    "web-sys",
    "js-sys",
    "getrandom",
    "rand",
    "rand_chacha",
    "rand_os",
];

/// Crate families the core must not depend on, matched by package-name prefix.
const FORBIDDEN_PREFIX: &[&str] = &["leptos", "wasm-bindgen", "tokio", "axum"];

/// Whether a package name is forbidden in the core's dependency tree.
fn is_forbidden(name: &str) -> bool {
    FORBIDDEN_EXACT.contains(&name) || FORBIDDEN_PREFIX.iter().any(|p| name.starts_with(p))
}

/// A source rule: a `::`-separated path searched for in core/src code.
struct SourceRule {
    /// The path segments, matched as whole identifiers with optional
    /// whitespace around each `::`.
    segments: &'static [&'static str],
    /// How the rule is reported.
    label: &'static str,
    /// Why the use is forbidden.
    why: &'static str,
}

/// Uses the core must not make. `SystemTime` is matched on its own so that
/// `use std::time::{Duration, SystemTime}` is caught as well.
const SOURCE_RULES: &[SourceRule] = &[
    SourceRule {
        segments: &["SystemTime"],
        label: "std::time::SystemTime",
        why: "reads the wall clock",
    },
    SourceRule {
        segments: &["Instant", "now"],
        label: "Instant::now",
        why: "reads the monotonic clock",
    },
    SourceRule {
        segments: &["std", "fs"],
        label: "std::fs",
        why: "file-system I/O",
    },
    SourceRule {
        segments: &["std", "net"],
        label: "std::net",
        why: "network I/O",
    },
    SourceRule {
        segments: &["std", "env"],
        label: "std::env",
        why: "reads the process environment",
    },
    SourceRule {
        segments: &["thread_rng"],
        label: "thread_rng",
        why: "reads an OS-seeded RNG",
    },
    SourceRule {
        segments: &["OsRng"],
        label: "OsRng",
        why: "reads the OS RNG",
    },
];

/// Modules of `std` that may not be imported through a `use std::{...}` group.
const FORBIDDEN_STD_MODULES: &[(&str, &str)] = &[
    ("fs", "file-system I/O"),
    ("net", "network I/O"),
    ("env", "reads the process environment"),
];

/// `cargo xtask check-invariants`: checks the core's dependency trees (host
/// and wasm32) and scans its source, reporting every violation before failing.
fn check_invariants(ctx: &Ctx) -> Result<()> {
    let mut problems = 0usize;
    for target in [None, Some(WASM_TARGET)] {
        problems += check_dependency_tree(ctx, target)?;
    }
    problems += check_core_source(ctx)?;
    if problems > 0 {
        bail!("architecture invariant violated ({problems} problem(s) above): {CORE_PACKAGE} must perform no I/O, read no clock or RNG, and depend on no platform crates");
    }
    println!("check-invariants: ok");
    Ok(())
}

/// Checks one target's normal-dependency tree of the core; returns the
/// number of forbidden packages found (each reported with its path).
fn check_dependency_tree(ctx: &Ctx, target: Option<&str>) -> Result<usize> {
    let label = target.unwrap_or("host");
    let mut args = vec![
        "tree",
        "-p",
        CORE_PACKAGE,
        "-e",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ];
    if let Some(t) = target {
        args.extend(["--target", t]);
    }
    let tree = capture(&mut ctx.cargo(&args))
        .with_context(|| format!("cannot list the dependencies of {CORE_PACKAGE} ({label})"))?;
    let packages = parse_tree_packages(&tree);
    if !packages.iter().any(|(name, _)| name == CORE_PACKAGE) {
        bail!("unexpected `cargo tree` output for {CORE_PACKAGE} ({label}): it does not list {CORE_PACKAGE} itself");
    }
    let offenders: Vec<&(String, String)> = packages
        .iter()
        .filter(|(name, _)| is_forbidden(name))
        .collect();
    println!(
        "check-invariants: {CORE_PACKAGE} normal dependencies ({label}): {} packages checked against forbidden [{}, {}*]",
        packages.len(),
        FORBIDDEN_EXACT.join(", "),
        FORBIDDEN_PREFIX.join("*, "),
    );
    for (name, version) in &offenders {
        eprintln!("check-invariants: FORBIDDEN dependency `{name} v{version}` in {CORE_PACKAGE} ({label}); it is pulled in by:");
        let spec = format!("{name}@{version}");
        let mut inverse = vec!["tree", "-p", CORE_PACKAGE, "-e", "normal", "-i", &spec];
        if let Some(t) = target {
            inverse.extend(["--target", t]);
        }
        match capture(&mut ctx.cargo(&inverse)) {
            Ok(path) => {
                for line in path.lines() {
                    eprintln!("    {line}");
                }
            }
            Err(e) => eprintln!("    (could not show the path: {e:#})"),
        }
    }
    Ok(offenders.len())
}

/// Unique `(name, version)` pairs from `cargo tree --prefix none --format {p}`
/// output, whose lines look like `blake3 v1.8.2` or `core v0.1.0 (/path) (*)`.
fn parse_tree_packages(tree: &str) -> BTreeSet<(String, String)> {
    tree.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let version = words.next()?.strip_prefix('v')?;
            Some((name.to_owned(), version.to_owned()))
        })
        .collect()
}

/// A forbidden use found in a source file.
#[derive(Debug, PartialEq, Eq)]
struct Violation {
    /// 1-based line number.
    line: usize,
    /// What was found, e.g. `std::fs`.
    label: String,
    /// Why it is forbidden.
    why: &'static str,
}

/// Scans every `.rs` file under `core/src`; returns the number of violations.
fn check_core_source(ctx: &Ctx) -> Result<usize> {
    let src = ctx.root.join("core").join("src");
    let mut files = Vec::new();
    collect_rust_files(&src, &mut files)
        .with_context(|| format!("cannot list {}", src.display()))?;
    files.sort();
    let mut count = 0;
    for file in &files {
        let text =
            fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        let lines: Vec<&str> = text.lines().collect();
        let shown = file.strip_prefix(&ctx.root).unwrap_or(file).display();
        for v in scan_source(&text) {
            let code = lines.get(v.line - 1).map_or("", |l| l.trim());
            eprintln!(
                "check-invariants: {shown}:{}: `{}` ({}): {code}",
                v.line, v.label, v.why
            );
            count += 1;
        }
    }
    let labels: Vec<&str> = SOURCE_RULES.iter().map(|r| r.label).collect();
    println!(
        "check-invariants: scanned {} files under core/src (code only, comments and literals ignored) for {} and `use std::{{fs, net, env}}`: {count} found",
        files.len(),
        labels.join(", "),
    );
    Ok(count)
}

/// Appends every `.rs` file under `dir` (recursively) to `out`; a missing
/// directory contributes nothing.
fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.is_dir() {
            collect_rust_files(&path, out)?;
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

/// Finds forbidden uses in Rust source text, ignoring comments and the
/// contents of string and character literals.
fn scan_source(source: &str) -> Vec<Violation> {
    let code: Vec<char> = blank_non_code(source).chars().collect();
    let line_of = |pos: usize| code[..pos].iter().filter(|&&c| c == '\n').count() + 1;
    let mut found = Vec::new();
    for rule in SOURCE_RULES {
        for pos in find_path(&code, rule.segments) {
            found.push(Violation {
                line: line_of(pos),
                label: rule.label.to_owned(),
                why: rule.why,
            });
        }
    }
    // `use std::{fs, ...}` hides `std::fs` from the plain path search.
    for pos in find_path(&code, &["std"]) {
        let after = skip_ws(&code, pos + 3);
        let Some(after) = eat(&code, after, "::") else {
            continue;
        };
        let brace = skip_ws(&code, after);
        if code.get(brace) != Some(&'{') {
            continue;
        }
        for (item_pos, head) in group_heads(&code, brace) {
            if let Some((module, why)) = FORBIDDEN_STD_MODULES.iter().find(|(m, _)| *m == head) {
                found.push(Violation {
                    line: line_of(item_pos),
                    label: format!("std::{module}"),
                    why,
                });
            }
        }
    }
    found.sort_by_key(|v| v.line);
    found
}

/// Whether `c` can be part of an identifier.
fn is_ident(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

/// The index of the first non-whitespace char at or after `i`.
fn skip_ws(text: &[char], mut i: usize) -> usize {
    while text.get(i).is_some_and(|c| c.is_whitespace()) {
        i += 1;
    }
    i
}

/// If `text[i..]` starts with `s`, the index just past it.
fn eat(text: &[char], i: usize, s: &str) -> Option<usize> {
    let mut j = i;
    for expected in s.chars() {
        if text.get(j) != Some(&expected) {
            return None;
        }
        j += 1;
    }
    Some(j)
}

/// Start indices of `segments` joined by `::` (whitespace allowed around
/// each `::`), each segment a whole identifier.
fn find_path(text: &[char], segments: &[&str]) -> Vec<usize> {
    let Some((first, rest)) = segments.split_first() else {
        return Vec::new();
    };
    let mut hits = Vec::new();
    for start in 0..text.len() {
        if start > 0 && is_ident(text[start - 1]) {
            continue;
        }
        let Some(mut j) = eat(text, start, first) else {
            continue;
        };
        let mut matched = true;
        for segment in rest {
            match eat(text, skip_ws(text, j), "::")
                .and_then(|k| eat(text, skip_ws(text, k), segment))
            {
                Some(k) => j = k,
                None => {
                    matched = false;
                    break;
                }
            }
        }
        if matched && !text.get(j).is_some_and(|&c| is_ident(c)) {
            hits.push(start);
        }
    }
    hits
}

/// For the `{ ... }` group opening at `open`, the position and leading
/// identifier of each top-level item (`fs` for `fs::File`, `io` for `io::{self}`).
fn group_heads(text: &[char], open: usize) -> Vec<(usize, String)> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut item_start = open + 1;
    for (i, &c) in text.iter().enumerate().skip(open) {
        let item_ends = match c {
            '{' => {
                depth += 1;
                false
            }
            '}' => {
                depth -= 1;
                depth == 0
            }
            ',' => depth == 1,
            _ => false,
        };
        if item_ends {
            let begin = skip_ws(text, item_start);
            let head: String = text[begin..i]
                .iter()
                .take_while(|&&c| is_ident(c))
                .collect();
            if !head.is_empty() {
                heads.push((begin, head));
            }
            item_start = i + 1;
            if depth == 0 {
                break;
            }
        }
    }
    heads
}

/// Replaces comments and the contents of string and character literals with
/// spaces, keeping newlines so line numbers still match the original text.
fn blank_non_code(source: &str) -> String {
    /// Appends a blank standing for `c` (newlines are kept).
    fn blank(out: &mut String, c: char) {
        out.push(if c == '\n' { '\n' } else { ' ' });
    }

    let chars: Vec<char> = source.chars().collect();
    let n = chars.len();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < n {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < n && chars[i] != '\n' {
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0usize;
            while i < n {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, chars[i]);
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_hashes(&chars, i) {
            // r##"..."## (also br"", cr""; the prefix letter is already emitted)
            let open = hashes + 2;
            out.extend(std::iter::repeat_n(' ', open));
            i += open;
            while i < n {
                if chars[i] == '"' && (1..=hashes).all(|k| chars.get(i + k) == Some(&'#')) {
                    out.extend(std::iter::repeat_n(' ', hashes + 1));
                    i += hashes + 1;
                    break;
                }
                blank(&mut out, chars[i]);
                i += 1;
            }
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < n {
                let ch = chars[i];
                blank(&mut out, ch);
                i += 1;
                if ch == '\\' {
                    if let Some(&escaped) = chars.get(i) {
                        blank(&mut out, escaped);
                        i += 1;
                    }
                } else if ch == '"' {
                    break;
                }
            }
        } else if let Some(len) = char_literal_len(&chars, i) {
            for &ch in &chars[i..i + len] {
                blank(&mut out, ch);
            }
            i += len;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// If a raw string literal (`r"`, `r#"`, ...) starts with the `r` at `i`,
/// the number of `#`s in its delimiter.
fn raw_string_hashes(chars: &[char], i: usize) -> Option<usize> {
    if chars.get(i) != Some(&'r') {
        return None;
    }
    // The `r` must begin a token, optionally after a `b` or `c` prefix.
    let starts_token = |k: usize| k == 0 || !is_ident(chars[k - 1]);
    let prefixed = i > 0 && matches!(chars[i - 1], 'b' | 'c') && starts_token(i - 1);
    if !(starts_token(i) || prefixed) {
        return None;
    }
    let hashes = chars[i + 1..].iter().take_while(|&&c| c == '#').count();
    (chars.get(i + 1 + hashes) == Some(&'"')).then_some(hashes)
}

/// If a character literal (`'x'`, `'\n'`, `'\u{1F600}'`) starts at `i`, its
/// length in chars; `None` for lifetimes and labels.
fn char_literal_len(chars: &[char], i: usize) -> Option<usize> {
    if chars.get(i) != Some(&'\'') {
        return None;
    }
    match chars.get(i + 1)? {
        '\\' => (i + 3..chars.len().min(i + 14))
            .find(|&j| chars[j] == '\'')
            .map(|j| j - i + 1),
        '\'' => None,
        _ => (chars.get(i + 2) == Some(&'\'')).then_some(3),
    }
}

// ---------------------------------------------------------------------------
// test, bench, fuzz-build
// ---------------------------------------------------------------------------

/// `cargo xtask test`: setup, then native tests, then the core's wasm32
/// tests, then the worker's browser tests.
fn test(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    test_native(ctx, false)?;
    test_wasm(ctx, false)?;
    test_browser(ctx)?;
    build_app(ctx)?;
    test_e2e(ctx)
}

/// Runs the native test suite of the whole workspace (except the bench
/// crate). `CIVICBASE_SCHEDULES` is inherited unchanged, except as
/// described in [`apply_ci_schedules`].
fn test_native(ctx: &Ctx, ci_defaults: bool) -> Result<()> {
    let mut args = vec!["test", "--workspace"];
    if ctx.has_bench_crate() {
        args.extend(["--exclude", BENCH_PACKAGE]);
    }
    let mut cmd = ctx.cargo(&args);
    apply_ci_schedules(&mut cmd, ci_defaults);
    run_cmd(&mut cmd)
}

/// Runs the core's tests on wasm32 (the cargo runner in `.cargo/config.toml`
/// is `wasm-bindgen-test-runner`, which uses Node by default).
fn test_wasm(ctx: &Ctx, ci_defaults: bool) -> Result<()> {
    if ctx.which("wasm-bindgen-test-runner").is_none() {
        bail!("wasm-bindgen-test-runner is not installed (it is the cargo runner for {WASM_TARGET}); `cargo xtask setup` installs it once Cargo.lock contains wasm-bindgen");
    }
    let mut cmd = ctx.cargo(&["test", "-p", CORE_PACKAGE, "--target", WASM_TARGET]);
    apply_ci_schedules(&mut cmd, ci_defaults);
    run_cmd(&mut cmd)
}

/// Runs the worker's tests in headless Chromium, inside a dedicated Web
/// Worker: `wasm-bindgen-test-runner` starts [`CHROMEDRIVER`], which starts
/// the browser configured in `worker/webdriver.json`.
fn test_browser(ctx: &Ctx) -> Result<()> {
    if !Path::new(CHROMEDRIVER).is_file() {
        bail!("{CHROMEDRIVER} is missing (the browser tests need Chromium and ChromeDriver); `cargo xtask setup` installs them");
    }
    println!("test: CHROMEDRIVER={CHROMEDRIVER}");
    let mut cmd = ctx.cargo(&["test", "-p", WORKER_PACKAGE, "--target", WASM_TARGET]);
    cmd.env("CHROMEDRIVER", CHROMEDRIVER);
    run_cmd(&mut cmd)
}

/// With `ci_defaults` and `CI` set, gives a test command
/// `CIVICBASE_SCHEDULES=2000` unless the variable is already set; otherwise
/// the variable is inherited unchanged. Prints the value in effect.
fn apply_ci_schedules(cmd: &mut Command, ci_defaults: bool) {
    match env::var_os(SCHEDULES_VAR) {
        Some(value) => println!("test: {SCHEDULES_VAR}={}", value.to_string_lossy()),
        None if ci_defaults && env_is_set("CI") => {
            println!("test: CI is set; {SCHEDULES_VAR}={CI_SCHEDULES}");
            cmd.env(SCHEDULES_VAR, CI_SCHEDULES);
        }
        None => {}
    }
}

/// Whether an environment variable is set to a non-empty value.
fn env_is_set(name: &str) -> bool {
    env::var_os(name).is_some_and(|v| !v.is_empty())
}

/// `cargo xtask bench`: runs the benchmark crate if it exists.
fn bench(ctx: &Ctx) -> Result<()> {
    if !ctx.has_bench_crate() {
        println!("bench: there is no bench crate (bench/Cargo.toml not found); nothing to run");
        return Ok(());
    }
    run_cmd(&mut ctx.cargo(&["bench", "-p", BENCH_PACKAGE]))
}

/// `cargo xtask run`: installs what is missing, builds the app, and serves it
/// with the signaling server on 127.0.0.1 (`PORT`, default 8080), with an
/// anchor peer on `civicbase-data/anchor` beside it (not with
/// `--signaling-only`), until stopped with Ctrl-C.
fn run_demo(ctx: &Ctx, signaling_only: bool) -> Result<()> {
    /// The always-on peer's package.
    const ANCHOR_PACKAGE: &str = "civicbase-anchor";
    setup(ctx)?;
    build_app(ctx)?;
    let port = env::var("PORT").unwrap_or_else(|_| "8080".to_owned());
    let bind = format!("127.0.0.1:{port}");
    let dist = ctx.root.join("dist");
    let dist = dist.to_string_lossy().into_owned();
    // Build both first, so that neither process waits for the other's build
    // once they run; one package at a time, as `cargo run` resolves their
    // features, or it would build again.
    run_cmd(&mut ctx.cargo(&["build", "--quiet", "-p", SIGNALING_PACKAGE]))?;
    if !signaling_only {
        run_cmd(&mut ctx.cargo(&["build", "--quiet", "-p", ANCHOR_PACKAGE]))?;
    }

    // `cargo run` replaces itself with the program, and the children share
    // this terminal's process group: Ctrl-C reaches both, and each shuts
    // down gracefully (the anchor stores what it has and says goodbye to
    // its peers). A signal sent to this process alone (SIGTERM from a
    // service manager, say) is passed on to both below.
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot listen for signals")?;
    }
    let spawn = |cmd: &mut Command| -> Result<std::process::Child> {
        let shown = display(cmd);
        println!("$ {shown}");
        cmd.spawn()
            .with_context(|| format!("failed to start `{shown}`"))
    };
    let mut signaling = spawn(&mut ctx.cargo(&[
        "run",
        "--quiet",
        "-p",
        SIGNALING_PACKAGE,
        "--",
        "--bind",
        &bind,
        "--static-dir",
        &dist,
    ]))?;
    let mut anchor = None;
    if !signaling_only {
        let url = format!("ws://{bind}/signal");
        let data = ctx.root.join("civicbase-data").join("anchor");
        let data = data.to_string_lossy().into_owned();
        match spawn(&mut ctx.cargo(&[
            "run",
            "--quiet",
            "-p",
            ANCHOR_PACKAGE,
            "--",
            "--signaling",
            &url,
            "--data-dir",
            &data,
        ])) {
            Ok(child) => anchor = Some(child),
            Err(e) => {
                let _ = signaling.kill();
                let _ = signaling.wait();
                return Err(e);
            }
        }
    }
    println!();
    println!("Open http://{bind}/ in a browser. Ctrl-C stops everything.");
    if !signaling_only {
        println!(
            "The anchor keeps the spaces it is given: restart with \
             CIVICBASE_ANCHOR_JOIN=<invite link> to add one."
        );
    }
    // Whichever stops first (an error, a port in use) stops the other.
    loop {
        if stop.load(Ordering::Relaxed) {
            // The anchor first, so that it can still tell its peers.
            if let Some(mut a) = anchor {
                stop_child(&mut a);
            }
            stop_child(&mut signaling);
            println!("stopped");
            return Ok(());
        }
        if let Some(status) = signaling.try_wait()? {
            if let Some(mut a) = anchor {
                stop_child(&mut a);
            }
            if !status.success() {
                bail!("the signaling server stopped ({status})");
            }
            return Ok(());
        }
        if let Some(a) = anchor.as_mut() {
            if let Some(status) = a.try_wait()? {
                stop_child(&mut signaling);
                if !status.success() {
                    bail!("the anchor stopped ({status})");
                }
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Asks a child to stop (SIGTERM, so it shuts down gracefully), and kills it
/// if it has not within five seconds.
fn stop_child(child: &mut std::process::Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// `cargo xtask bench-browser`: builds the app and a 10,000-record bundle,
/// then runs `tests/e2e/bench.mjs`, which prints the figures.
fn bench_browser(ctx: &Ctx) -> Result<()> {
    setup(ctx)?;
    build_app(ctx)?;
    let bundle = ctx.root.join("target").join("bench-10k.civicbase");
    let bundle_arg = bundle.to_string_lossy().into_owned();
    run_cmd(&mut ctx.cargo(&[
        "run",
        "--release",
        "--quiet",
        "-p",
        CORE_PACKAGE,
        "--example",
        "gen_bundle",
        "--",
        &bundle_arg,
        "10000",
        "50",
    ]))?;
    let mut cmd = ctx.command("node");
    cmd.arg(ctx.root.join(E2E_DIR).join("bench.mjs"))
        .env("BENCH_BUNDLE", &bundle);
    run_cmd(&mut cmd)?;
    run_cmd(&mut ctx.cargo(&["build", "-p", "civicbase-signaling"]))?;
    let mut cmd = ctx.command("node");
    cmd.arg(ctx.root.join(E2E_DIR).join("bench-webrtc.mjs"))
        .env("BENCH_BUNDLE", &bundle);
    run_cmd(&mut cmd)
}

/// `cargo xtask fuzz-build`: builds the fuzz targets when `fuzz/`, cargo-fuzz
/// and a nightly toolchain are all present; otherwise explains what is
/// missing and succeeds (fuzzing is not part of CI).
fn fuzz_build(ctx: &Ctx) -> Result<()> {
    if !ctx.has_file("fuzz/Cargo.toml") {
        println!(
            "fuzz-build: there is no fuzz crate (fuzz/Cargo.toml not found); nothing to build"
        );
        return Ok(());
    }
    if ctx.which("cargo-fuzz").is_none() {
        println!("fuzz-build: cargo-fuzz is not installed; skipping.");
        println!("fuzz-build: install it with `cargo install cargo-fuzz` and a nightly toolchain with `rustup toolchain install nightly`.");
        return Ok(());
    }
    if ctx.which("rustup").is_some() {
        let toolchains = capture(ctx.command("rustup").args(["toolchain", "list"]))?;
        if !toolchains.lines().any(|line| line.starts_with("nightly")) {
            println!("fuzz-build: no nightly toolchain; skipping. Install it with `rustup toolchain install nightly`.");
            return Ok(());
        }
    }
    run_cmd(&mut ctx.cargo(&["+nightly", "fuzz", "build"]))
}

// ---------------------------------------------------------------------------
// ci
// ---------------------------------------------------------------------------

/// One step of `cargo xtask ci`.
type Step = fn(&Ctx) -> Result<()>;

/// The steps of `cargo xtask ci`, in order.
const CI_STEPS: &[(&str, Step)] = &[
    ("setup", setup),
    ("fmt", |ctx| {
        run_cmd(&mut ctx.cargo(&["fmt", "--all", "--check"]))
    }),
    ("clippy", |ctx| {
        run_cmd(&mut ctx.cargo(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    }),
    ("clippy-wasm32", |ctx| {
        run_cmd(&mut ctx.cargo(&[
            "clippy",
            "-p",
            CORE_PACKAGE,
            "-p",
            WORKER_PACKAGE,
            "-p",
            APP_PACKAGE,
            "--target",
            WASM_TARGET,
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]))
    }),
    ("check-invariants", check_invariants),
    ("test-native", |ctx| test_native(ctx, true)),
    ("test-wasm32", |ctx| test_wasm(ctx, true)),
    ("test-browser", test_browser),
    ("build-app", build_app),
    ("test-e2e", test_e2e),
];

/// `cargo xtask ci`: runs [`CI_STEPS`] in order, timing each, stopping at the
/// first failure, and prints a summary table either way.
fn ci(ctx: &Ctx) -> Result<()> {
    let started = Instant::now();
    let mut rows: Vec<(&str, Option<Duration>, &str)> = Vec::new();
    let mut failure = None;
    for &(name, step) in CI_STEPS {
        if failure.is_some() {
            rows.push((name, None, "not run"));
            continue;
        }
        println!("\n==> {name}");
        let step_started = Instant::now();
        let result = step(ctx);
        let took = step_started.elapsed();
        match result {
            Ok(()) => {
                println!("==> {name}: ok ({})", fmt_duration(took));
                rows.push((name, Some(took), "ok"));
            }
            Err(error) => {
                println!("==> {name}: FAILED ({})", fmt_duration(took));
                rows.push((name, Some(took), "FAILED"));
                failure = Some(error.context(format!("ci step `{name}` failed")));
            }
        }
    }
    println!("\n==> summary");
    println!("    {:<18} {:>9}  result", "step", "time");
    for (name, took, result) in &rows {
        let shown = took.map(fmt_duration).unwrap_or_else(|| "-".to_owned());
        println!("    {name:<18} {shown:>9}  {result}");
    }
    println!("    {:<18} {:>9}", "total", fmt_duration(started.elapsed()));
    match failure {
        Some(error) => Err(error),
        None => {
            println!("\nci: all checks passed");
            Ok(())
        }
    }
}

// ---------------------------------------------------------------------------
// Tests of the parsers
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_versions_are_read_per_package() {
        let lock = r#"
# This file is automatically @generated by Cargo.
version = 4

[[package]]
name = "wasm-bindgen"
version = "0.2.100"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = [
 "wasm-bindgen-macro",
]

[[package]]
name = "wasm-bindgen-macro"
version = "0.2.101"
"#;
        assert_eq!(
            locked_versions(lock, "wasm-bindgen"),
            vec!["0.2.100".to_owned()]
        );
        assert_eq!(
            locked_versions(lock, "wasm-bindgen-macro"),
            vec!["0.2.101".to_owned()]
        );
        assert!(locked_versions(lock, "js-sys").is_empty());
    }

    #[test]
    fn runner_version_is_parsed() {
        assert_eq!(
            parse_runner_version("wasm-bindgen-test-runner 0.2.100\n"),
            Some("0.2.100".to_owned())
        );
        assert_eq!(parse_runner_version("garbage"), None);
    }

    #[test]
    fn tree_lines_are_parsed() {
        let tree = "civicbase-core v0.1.0 (/work/main/core)\nblake3 v1.8.2\nserde v1.0.219 (*)\n";
        let packages = parse_tree_packages(tree);
        assert!(packages.contains(&("blake3".to_owned(), "1.8.2".to_owned())));
        assert!(packages.contains(&("serde".to_owned(), "1.0.219".to_owned())));
        assert_eq!(packages.len(), 3);
    }

    #[test]
    fn forbidden_names_match_exactly_or_by_family() {
        for name in [
            "getrandom",
            "rand",
            "rand_chacha",
            "js-sys",
            "web-sys",
            "tokio-util",
            "wasm-bindgen-shared",
            "leptos_dom",
            "axum",
        ] {
            assert!(is_forbidden(name), "{name} should be forbidden");
        }
        for name in [
            "rand_core",
            "blake3",
            "ed25519-dalek",
            "random",
            "tokenizer",
        ] {
            assert!(!is_forbidden(name), "{name} should be allowed");
        }
    }

    /// The labels found in `source`, in line order.
    fn labels(source: &str) -> Vec<(usize, String)> {
        scan_source(source)
            .into_iter()
            .map(|v| (v.line, v.label))
            .collect()
    }

    #[test]
    fn comments_and_literals_are_ignored() {
        let source = r##"
//! Never calls std::fs or SystemTime.
/* block std::net /* nested Instant::now() */ still comment thread_rng */
/// Doc: `std::env::var`.
fn f() -> &'static str {
    let _q = '"';
    let _s = "std::fs::read \" OsRng";
    let _r = r#"std::net "quoted" SystemTime"#;
    let _b = br"std::env";
    'outer: loop { break 'outer; }
    "ok"
}
"##;
        assert_eq!(labels(source), Vec::new());
    }

    #[test]
    fn code_uses_are_found_with_lines() {
        let source = "use std::fs;\nfn now() { let t = std::time::SystemTime::now(); }\nlet i = Instant :: now();\nlet r = rand::thread_rng();\nuse ::std::env as e;\nlet mut rng = OsRng;\nstd::net::TcpStream::connect(a);\n";
        assert_eq!(
            labels(source),
            vec![
                (1, "std::fs".to_owned()),
                (2, "std::time::SystemTime".to_owned()),
                (3, "Instant::now".to_owned()),
                (4, "thread_rng".to_owned()),
                (5, "std::env".to_owned()),
                (6, "OsRng".to_owned()),
                (7, "std::net".to_owned()),
            ]
        );
    }

    #[test]
    fn grouped_std_imports_are_found() {
        let source = "use std::{\n    collections::BTreeMap,\n    fs::{self, File},\n    io::{self, Read},\n    net,\n};\n";
        assert_eq!(
            labels(source),
            vec![(3, "std::fs".to_owned()), (5, "std::net".to_owned())]
        );
        assert_eq!(labels("use std::{collections::BTreeMap, fmt};"), Vec::new());
    }

    #[test]
    fn allowed_look_alikes_are_not_flagged() {
        let source = "struct Instant; impl Instant { fn now_ms(&self) {} }\nlet fs = 1; let my_std::fs = 2; let x = OsRngLike; fn thread_rng_free() {}\nuse core::fmt;\n";
        assert_eq!(labels(source), Vec::new());
    }

    #[test]
    fn durations_are_formatted() {
        assert_eq!(fmt_duration(Duration::from_millis(1234)), "1.2s");
        assert_eq!(fmt_duration(Duration::from_millis(125_600)), "2m05.6s");
    }
}
