//! `replisnap completions SHELL` and `replisnap man`: shell completions and a man page,
//! generated from the same clap definitions the verbs parse with, so they never drift. A
//! leaf: the command tree is handed in. It writes only to stdout.

use std::io::Write;
use std::process::ExitCode;

use clap::Args;

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell
    /// (e.g. `replisnap completions bash > /etc/bash_completion.d/replisnap`)
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {}

/// Print the completion script for `args.shell`.
pub fn completions(args: CompletionsArgs, mut cmd: clap::Command) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let name = cmd.get_name().to_string();
    // Into memory first: the generator panics on a write error (a closed pipe).
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, name, &mut out);
    std::io::stdout()
        .write_all(&out)
        .context("stdout: cannot write the completion script")?;
    Ok(ExitCode::SUCCESS)
}

/// Print a man page in roff: the command, then a section per verb
/// (`replisnap man > /usr/share/man/man1/replisnap.1`).
pub fn man(_args: ManArgs, cmd: clap::Command) -> anyhow::Result<ExitCode> {
    use anyhow::Context;
    let mut out = Vec::new();
    let page = clap_mangen::Man::new(cmd.clone());
    page.render_title(&mut out)?;
    page.render_name_section(&mut out)?;
    page.render_synopsis_section(&mut out)?;
    page.render_description_section(&mut out)?;
    page.render_options_section(&mut out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name();
        writeln!(out, ".SH \"{}\"", name.to_uppercase())?;
        let sub = sub.clone().bin_name(format!("replisnap {name}"));
        let m = clap_mangen::Man::new(sub);
        m.render_synopsis_section(&mut out)?;
        m.render_description_section(&mut out)?;
        m.render_options_section(&mut out)?;
    }
    page.render_version_section(&mut out)?;
    std::io::stdout()
        .write_all(&out)
        .context("stdout: cannot write the man page")?;
    Ok(ExitCode::SUCCESS)
}
