//! Shell completions and the man page, generated from the clap definitions
//! so they can never drift from the command line itself.

use super::{output, Cli};
use clap::CommandFactory;
use std::process::ExitCode;

/// The shells `switchyard completions` writes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// The completion script for `shell`.
pub fn completion_script(shell: Shell) -> Vec<u8> {
    let mut cmd = Cli::command();
    let mut out = Vec::new();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut cmd, "switchyard", &mut out);
    out
}

/// The man page, roff: `switchyard(1)` with every subcommand (ctl's too)
/// rendered as sections.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let cmd = Cli::command();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render(&mut out)?;
    for sub in cmd.get_subcommands() {
        render_subcommand(sub, "switchyard", &mut out)?;
    }
    Ok(out)
}

/// A subcommand (and its own subcommands) as extra sections of the page.
fn render_subcommand(cmd: &clap::Command, parent: &str, out: &mut Vec<u8>) -> std::io::Result<()> {
    if cmd.get_name() == "help" {
        return Ok(());
    }
    let name = format!("{parent} {}", cmd.get_name());
    out.extend_from_slice(format!(".SH \"{}\"\n", name.to_uppercase()).as_bytes());
    let man = clap_mangen::Man::new(cmd.clone().name(name.clone()));
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(out)?;
    }
    if cmd.get_after_help().is_some() {
        man.render_extra_section(out)?;
    }
    for sub in cmd.get_subcommands() {
        render_subcommand(sub, &name, out)?;
    }
    Ok(())
}

fn write(bytes: &[u8], what: &str) -> ExitCode {
    match output::out(&String::from_utf8_lossy(bytes)) {
        Err(e) if !output::reader_gone(&e) => {
            output::err(&format!("switchyard {what}: cannot print it: {e}\n"));
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

pub fn completions(shell: Shell) -> ExitCode {
    write(&completion_script(shell), "completions")
}

pub fn man() -> ExitCode {
    match man_page() {
        Ok(page) => write(&page, "man"),
        Err(e) => {
            output::err(&format!("switchyard man: {e}\n"));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completions_know_every_ctl_subcommand() {
        // clap_complete's fish script stops at the second level of
        // subcommands (`ctl rollout`); bash and zsh go all the way.
        for (shell, deep) in [
            (Shell::Bash, true),
            (Shell::Zsh, true),
            (Shell::Fish, false),
        ] {
            let text = String::from_utf8(completion_script(shell)).unwrap();
            let mut words = vec!["ctl", "rollout", "endpoint", "json"];
            if deep {
                words.extend(["drain", "step-interval", "wait"]);
            }
            for word in words {
                assert!(text.contains(word), "{shell:?} completion lacks {word}");
            }
        }
    }

    #[test]
    fn the_man_page_covers_ctl_and_its_exit_codes() {
        let page = String::from_utf8(man_page().unwrap()).unwrap();
        assert!(
            page.starts_with(".ie") || page.contains(".TH switchyard 1"),
            "{}",
            &page[..200]
        );
        for part in [
            "SWITCHYARD CTL ROLLOUT START",
            "step\\-interval",
            "Exit codes",
        ] {
            assert!(page.contains(part), "man page lacks {part}");
        }
    }
}
