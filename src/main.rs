//! The `gitfaas` binary: parse settings, start logging, run the subcommand.
//! Exit codes: 0 ok, 1 problems found (validate, render) or a call gitfaas
//! refused (publish, runs, logs, cancel, tree),
//! 2 usage or environment error.

use anyhow::Context;
use gitfaas::settings::Command;

/// How long a thread of the blocking pool (file reads, the store's
/// transactions) outlives its last call: tokio keeps it 10 s, and an idle
/// gitfaas then holds the start's threads, their stacks and allocator
/// pages, for nothing (issue 28's idle memory). A new one costs microseconds.
const BLOCKING_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(2);

// A multi-thread runtime: applies, callbacks and the loops (crate::tasks) run
// on it, in parallel; the HTTP workers keep their own runtimes.
fn main() -> std::process::ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("gitfaas: cannot start the async runtime: {e}");
            return std::process::ExitCode::from(gitfaas::cli::ERROR);
        }
    };
    match runtime.block_on(run()) {
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
