//! The `gitfaas` binary: parse settings, start logging, run the subcommand.
//! Exit codes: 0 ok, 1 problems found (validate, render) or a call gitfaas
//! refused (publish, runs, logs, cancel, tree),
//! 2 usage or environment error.

use anyhow::Context;
use gitfaas::settings::Command;

// A publish allocates and frees many small values (its parsed manifests, the
// JSON it sends, the records it writes): glibc's malloc was a fifth of a
// publish's instructions (BENCHMARKS.md, the callgrind profile), and its
// per-thread arenas keep freed memory after a burst. mimalloc is a
// well-kept allocator built for exactly this pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

// A multi-thread runtime: applies, callbacks and the loops (crate::tasks) run
// on it, in parallel; the HTTP workers keep their own runtimes.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gitfaas: {e:#}");
            std::process::ExitCode::from(gitfaas::cli::ERROR)
        }
    }
}

async fn run() -> anyhow::Result<std::process::ExitCode> {
    // As Cli::parse(), noting which secret-carrying flags were given as flags.
    let cli =
        gitfaas::settings::parse_command_line(std::env::args_os()).unwrap_or_else(|e| e.exit());
    match cli.command {
        Command::Serve(args) => {
            gitfaas::telemetry::init(&args.log_level, args.log_format == "json");
            let settings = args
                .validate(|k| std::env::var(k).ok())
                .context("invalid settings")?;
            let app = gitfaas::Application::build(settings)
                .await
                .context("while starting")?;
            app.run_until_stopped().await.context("while serving")?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Validate(args) => gitfaas::cli::validate(*args).await,
        Command::Render(args) => gitfaas::cli::render(*args).await,
        Command::Publish(args) => gitfaas::cli::publish(*args).await,
        Command::Runs(args) => gitfaas::cli::runs(*args).await,
        Command::Logs(args) => gitfaas::cli::logs(*args).await,
        Command::Cancel(args) => gitfaas::cli::cancel(*args).await,
        Command::Tree(args) => gitfaas::cli::tree(*args).await,
    }
}
