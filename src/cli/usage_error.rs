//! A clap error as one line that keeps what clap knew: the argument, the value, the valid values,
//! its "did you mean".
//!
//! clap renders a parse error over several lines: the message, the valid values or a suggestion
//! on lines of their own, the usage, and "For more information, try '--help'". We print one line
//! (a script reads it whole; a person sees at once what was wrong) and leave the usage to
//! `--help`. Cutting clap's text after its first line would lose the valid values and the name of
//! a missing argument, which come on later lines; so the line is built from what clap attaches to
//! every error: its [`ErrorKind`] and its *context*, typed facts such as
//! [`ContextKind::InvalidArg`] (`--protocol <NAME>`), [`ContextKind::InvalidValue`] (`nosuch`),
//! [`ContextKind::ValidValue`] (the possible values) and [`ContextKind::SuggestedArg`]
//! (`--for` for `--foo`). A value parser's own reason (our `units.rs`: "a duration cannot be
//! negative") is the error's `source()`. A kind that carries no context falls back to the first
//! line of clap's message, so every kind clap has, today's and tomorrow's, gives one line.
//!
//! ```text
//! echoloop: invalid value 'nosuch' for '--protocol <NAME>' (possible values: echo, timestamp, ...)
//! echoloop: missing required argument <ADDR> (see echoloop load --help)
//! echoloop: unexpected argument '--foo' (did you mean '--for'?)
//! echoloop: invalid value '-1' for '--duration <DURATION>': a duration cannot be negative
//! ```
//!
//! Next: `exit.rs`, how every command's failure becomes an exit code.

use std::error::Error as _;

use clap::Command;
use clap::error::{ContextKind, ContextValue, Error, ErrorKind};

/// The error as one line, without the `echoloop: ` that `main.rs` puts before it. `command` is
/// the whole command line's definition (`Cli::command()`): it lists the commands when none was
/// given.
pub fn one_line(error: &Error, command: &Command) -> String {
    let facts = Facts(error);
    let mut line = match describe(error, &facts) {
        Some(line) => line,
        None if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let names: Vec<&str> = command
                .get_subcommands()
                .map(Command::get_name)
                .filter(|name| *name != "help")
                .collect();
            let name = command.get_name();
            format!(
                "missing command: one of {} (see {name} --help)",
                names.join(", ")
            )
        }
        None => first_line_of(error),
    };
    let valid = facts.list(ContextKind::ValidValue);
    if !valid.is_empty() {
        line += &format!(" (possible values: {})", valid.join(", "));
    }
    let suggested = [
        ContextKind::SuggestedArg,
        ContextKind::SuggestedSubcommand,
        ContextKind::SuggestedValue,
    ]
    .into_iter()
    .flat_map(|kind| facts.list(kind))
    .map(|s| format!("'{s}'"))
    .collect::<Vec<_>>();
    if !suggested.is_empty() {
        line += &format!(" (did you mean {}?)", suggested.join(" or "));
    } else if let Some(tip) = facts.tip() {
        line += &format!(" (tip: {tip})");
    }
    if needs_usage(error.kind())
        && let Some(command) = facts.command_path()
    {
        line += &format!(" (see {command} --help)");
    }
    // Whatever a context or a value parser's reason held, the line stays one line.
    let pieces: Vec<&str> = line
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    pieces.join(" ")
}

/// The message for the kinds whose context says it all; `None` when the context is not there.
fn describe(error: &Error, facts: &Facts) -> Option<String> {
    let arg = facts.text(ContextKind::InvalidArg);
    let value = facts.text(ContextKind::InvalidValue);
    let line = match error.kind() {
        ErrorKind::InvalidValue if value?.is_empty() => {
            format!("a value is required for '{}'", arg?)
        }
        ErrorKind::InvalidValue => format!("invalid value '{}' for '{}'", value?, arg?),
        ErrorKind::ValueValidation => {
            let mut line = format!("invalid value '{}' for '{}'", value?, arg?);
            if let Some(reason) = error.source() {
                line += &format!(": {reason}");
            }
            line
        }
        ErrorKind::UnknownArgument => format!("unexpected argument '{}'", arg?),
        ErrorKind::InvalidSubcommand => format!(
            "unknown command '{}'",
            facts.text(ContextKind::InvalidSubcommand)?
        ),
        ErrorKind::MissingSubcommand => format!(
            "'{}' needs a command: one of {}",
            facts.text(ContextKind::InvalidSubcommand)?,
            facts.list(ContextKind::ValidSubcommand).join(", ")
        ),
        ErrorKind::MissingRequiredArgument => match facts.list(ContextKind::InvalidArg) {
            [] => return None,
            [one] => format!("missing required argument {one}"),
            several => format!("missing required arguments {}", several.join(", ")),
        },
        ErrorKind::ArgumentConflict => {
            let arg = arg.or(facts.text(ContextKind::InvalidSubcommand))?;
            match facts.list(ContextKind::PriorArg) {
                [prior] if prior == arg => format!("'{arg}' cannot be given more than once"),
                [] => format!("'{arg}' cannot be used with the other arguments given"),
                prior => format!("'{arg}' cannot be used with '{}'", prior.join("', '")),
            }
        }
        ErrorKind::NoEquals => format!("'{}' needs '=' before its value", arg?),
        ErrorKind::TooManyValues => {
            format!(
                "unexpected value '{}' for '{}': no more were expected",
                value?, arg?
            )
        }
        ErrorKind::TooFewValues => format!(
            "'{}' needs at least {} values, {} given",
            arg?,
            facts.number(ContextKind::MinValues)?,
            facts.number(ContextKind::ActualNumValues)?
        ),
        ErrorKind::WrongNumberOfValues => format!(
            "'{}' needs {} values, {} given",
            arg?,
            facts.number(ContextKind::ExpectedNumValues)?,
            facts.number(ContextKind::ActualNumValues)?
        ),
        ErrorKind::InvalidUtf8 => "an argument is not valid UTF-8".to_string(),
        _ => return None,
    };
    Some(line)
}

/// Mistakes that the usage explains (what is required, what exists): the line ends with where to
/// read it. The others name the argument and say what it takes already.
fn needs_usage(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::UnknownArgument
            | ErrorKind::InvalidSubcommand
            | ErrorKind::MissingRequiredArgument
            | ErrorKind::MissingSubcommand
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            | ErrorKind::TooManyValues
            | ErrorKind::TooFewValues
            | ErrorKind::WrongNumberOfValues
    )
}

/// The first line of clap's own message, for a kind without context (or an error made with
/// `Command::error`, which has only a message).
fn first_line_of(error: &Error) -> String {
    let text = error.to_string();
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("bad arguments");
    line.trim_start_matches("error: ").to_string()
}

/// Typed reads of an error's context.
struct Facts<'a>(&'a Error);

impl Facts<'_> {
    /// A single string: the argument, the value, the command.
    fn text(&self, kind: ContextKind) -> Option<&str> {
        match self.0.get(kind)? {
            ContextValue::String(text) => Some(text),
            _ => None,
        }
    }

    /// A list (a single string counts as a list of one).
    fn list(&self, kind: ContextKind) -> &[String] {
        match self.0.get(kind) {
            Some(ContextValue::Strings(list)) => list,
            Some(ContextValue::String(one)) => std::slice::from_ref(one),
            _ => &[],
        }
    }

    fn number(&self, kind: ContextKind) -> Option<isize> {
        match self.0.get(kind)? {
            ContextValue::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// clap's first tip (`to pass '-x' as a value, use '-- -x'`), as plain text.
    fn tip(&self) -> Option<String> {
        match self.0.get(ContextKind::Suggested)? {
            ContextValue::StyledStrs(tips) => tips.first().map(ToString::to_string),
            _ => None,
        }
    }

    /// The command the usage is for, `echoloop load`, read from `Usage: echoloop load [OPTIONS]
    /// <ADDR>`.
    fn command_path(&self) -> Option<String> {
        let ContextValue::StyledStr(usage) = self.0.get(ContextKind::Usage)? else {
            return None;
        };
        let usage = usage.to_string();
        let first = usage.lines().map(str::trim).find(|l| !l.is_empty())?;
        let words: Vec<&str> = first
            .trim_start_matches("Usage:")
            .split_whitespace()
            .take_while(|word| !word.starts_with(['[', '<', '-']))
            .collect();
        (!words.is_empty()).then(|| words.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction, Parser, value_parser};

    /// A small command line with one argument of each shape.
    fn command() -> Command {
        Command::new("echoloop")
            .subcommand_required(true)
            .arg_required_else_help(true)
            .subcommand(
                Command::new("serve").arg(
                    Arg::new("protocol")
                        .short('p')
                        .long("protocol")
                        .value_name("NAME")
                        .value_parser(["echo", "timestamp", "chat"]),
                ),
            )
            .subcommand(
                Command::new("load")
                    .arg(Arg::new("addr").value_name("ADDR").required(true))
                    .arg(
                        Arg::new("duration")
                            .short('d')
                            .long("duration")
                            .value_name("DURATION")
                            .allow_hyphen_values(true)
                            .value_parser(crate::cli::units::duration),
                    )
                    .arg(Arg::new("for").long("for").action(ArgAction::SetTrue))
                    .arg(
                        Arg::new("size")
                            .long("size")
                            .value_parser(value_parser!(u64))
                            .conflicts_with("payload"),
                    )
                    .arg(Arg::new("payload").long("payload"))
                    .arg(Arg::new("eq").long("eq").require_equals(true))
                    .arg(Arg::new("pair").long("pair").num_args(2)),
            )
    }

    fn line_for(args: &[&str]) -> String {
        let error = command()
            .try_get_matches_from(std::iter::once("echoloop").chain(args.iter().copied()))
            .expect_err("a bad command line");
        one_line(&error, &command())
    }

    #[test]
    fn an_invalid_value_lists_the_possible_ones() {
        assert_eq!(
            line_for(&["serve", "-p", "nosuch"]),
            "invalid value 'nosuch' for '--protocol <NAME>' (possible values: echo, timestamp, chat)"
        );
    }

    #[test]
    fn a_missing_argument_is_named() {
        assert_eq!(
            line_for(&["load"]),
            "missing required argument <ADDR> (see echoloop load --help)"
        );
    }

    #[test]
    fn an_unknown_flag_gets_clap_s_suggestion() {
        assert_eq!(
            line_for(&["load", "x", "--fo"]),
            "unexpected argument '--fo' (did you mean '--for'?) (see echoloop load --help)"
        );
        assert_eq!(
            line_for(&["lod"]),
            "unknown command 'lod' (did you mean 'load'?) (see echoloop --help)"
        );
    }

    #[test]
    fn a_value_parser_keeps_its_reason() {
        assert_eq!(
            line_for(&["load", "x", "-d", "-1"]),
            "invalid value '-1' for '--duration <DURATION>': a duration cannot be negative"
        );
        assert_eq!(
            line_for(&["load", "x", "--size", "lots"]),
            "invalid value 'lots' for '--size <size>': invalid digit found in string"
        );
    }

    #[test]
    fn other_kinds_name_their_argument() {
        assert_eq!(
            line_for(&["load", "x", "--size", "1", "--payload", "p"]),
            "'--size <size>' cannot be used with '--payload <payload>'"
        );
        assert_eq!(
            line_for(&["load", "x", "--eq", "v"]),
            "'--eq=<eq>' needs '=' before its value"
        );
        assert_eq!(
            line_for(&["serve", "-p"]),
            "a value is required for '--protocol <NAME>' (possible values: echo, timestamp, chat)"
        );
        assert_eq!(
            line_for(&[]),
            "missing command: one of serve, load (see echoloop --help)"
        );
    }

    #[test]
    fn every_kind_gives_one_line() {
        let kinds = [
            ErrorKind::InvalidValue,
            ErrorKind::UnknownArgument,
            ErrorKind::InvalidSubcommand,
            ErrorKind::NoEquals,
            ErrorKind::ValueValidation,
            ErrorKind::TooManyValues,
            ErrorKind::TooFewValues,
            ErrorKind::WrongNumberOfValues,
            ErrorKind::ArgumentConflict,
            ErrorKind::MissingRequiredArgument,
            ErrorKind::MissingSubcommand,
            ErrorKind::InvalidUtf8,
            ErrorKind::DisplayHelp,
            ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand,
            ErrorKind::DisplayVersion,
            ErrorKind::Io,
            ErrorKind::Format,
        ];
        for kind in kinds {
            // Made by hand, these carry a message and no context: the fallback's case.
            let error = command().error(kind, "first line\n\nsecond line\n  third");
            let line = one_line(&error, &command());
            assert!(!line.contains('\n'), "{kind:?}: {line:?}");
            assert!(!line.is_empty(), "{kind:?}");
        }
        // And from real parses, the kinds not met in the tests above.
        for (args, expected) in [
            (
                &["load", "x", "--pair", "a"][..],
                "'--pair <pair> <pair>' needs 2 values, 1 given (see echoloop load --help)",
            ),
            (
                &["load", "x", "y"],
                "unexpected argument 'y' (see echoloop load --help)",
            ),
            (
                &["serve", "--protocol", "echo", "--protocol", "chat"],
                "'--protocol <NAME>' cannot be given more than once",
            ),
        ] {
            assert_eq!(line_for(args), expected, "{args:?}");
        }
    }

    /// The real command line: its missing-command line lists the real commands.
    #[test]
    fn the_real_command_lists_its_commands() {
        let error = crate::cli::Cli::try_parse_from(["echoloop"]).unwrap_err();
        assert_eq!(
            one_line(
                &error,
                &<crate::cli::Cli as clap::CommandFactory>::command()
            ),
            "missing command: one of serve, load, report, client, put, get (see echoloop --help)"
        );
    }
}
