//! `orquesta completions bash|zsh|fish`: shell completion scripts, made by
//! clap_complete from the command line's own definition.

use std::process::ExitCode;

use clap::{Args, CommandFactory, ValueEnum};
use clap_complete::Shell;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    pub shell: CompletionShell,
}

/// The shells supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// `orquesta completions SHELL`: the script on standard output.
pub fn run(args: &CompletionsArgs) -> ExitCode {
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    let mut command = crate::cli::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "orquesta", &mut script);
    super::table::print_text(&String::from_utf8_lossy(&script));
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every help text of every command and flag, with where it is.
    fn help_texts(command: &clap::Command, path: &str, out: &mut Vec<(String, String)>) {
        let here = format!("{path} {}", command.get_name());
        for text in [command.get_about(), command.get_long_about()]
            .into_iter()
            .flatten()
        {
            out.push((here.clone(), text.to_string()));
        }
        for arg in command.get_arguments() {
            for text in [arg.get_help(), arg.get_long_help()].into_iter().flatten() {
                out.push((format!("{here} --{}", arg.get_id()), text.to_string()));
            }
        }
        for sub in command.get_subcommands() {
            help_texts(sub, &here, out);
        }
    }

    #[test]
    fn no_help_text_has_a_run_of_spaces_inside_a_sentence() {
        // a string literal broken over lines without `\` keeps the next
        // line's indentation: `orquesta gen --help` once printed gaps of
        // twenty spaces in its paragraph
        let mut texts = Vec::new();
        help_texts(&crate::cli::Cli::command(), "", &mut texts);
        assert!(texts.len() > 100, "only {} help texts found", texts.len());
        let bad: Vec<_> = texts.iter().filter(|(_, t)| t.contains("   ")).collect();
        assert!(bad.is_empty(), "help with a run of spaces: {bad:#?}");
    }
}
