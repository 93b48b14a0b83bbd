//! `echoloop`: command line → subcommand → exit code.
//!
//! Exit codes: 0 done, 1 could not start (address in use, permission denied) or failed while
//! running, 2 bad command-line input (one line on stderr naming the argument).

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;
use echoloop::cli::{Cli, Command, ServeArgs};
use echoloop::{Server, StartError};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            return ExitCode::from(2);
        }
        Err(e) => return usage_error(&e.render().to_string()),
    };
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if matches!(&cli.command, Command::Serve(args) if args.trace) {
        logger.filter_module("echoloop", log::LevelFilter::Trace);
    }
    logger.init();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Put(args) => echoloop::transfer::put(args),
        Command::Get(args) => echoloop::transfer::get(args),
    }
}

/// Bad input: the first line of the message (clap's names the argument), exit 2.
fn usage_error(message: &str) -> ExitCode {
    let line = message.lines().next().unwrap_or("error: bad arguments");
    eprintln!("echoloop: {}", line.trim_start_matches("error: "));
    ExitCode::from(2)
}

fn serve(args: ServeArgs) -> ExitCode {
    let config = args.into_config();
    let server = match Server::bind(&config) {
        Ok(server) => server,
        Err(e @ StartError::Config(_)) => return usage_error(&e.to_string()),
        Err(e) => {
            eprintln!("echoloop: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut stdout = std::io::stdout().lock();
    for socket in server.listening() {
        let _ = writeln!(stdout, "listening {socket}");
    }
    let _ = stdout.flush();
    drop(stdout);
    match server.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("server failed: {e}");
            ExitCode::FAILURE
        }
    }
}
