//! The `gitfaas` binary: parse settings, start logging, run the subcommand.

use anyhow::Context;
use clap::Parser;
use gitfaas::settings::{Cli, Command};

#[actix_web::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gitfaas: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
            Ok(())
        }
    }
}
