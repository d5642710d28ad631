//! `smss import-reg`: a Windows registry export (`.reg`) of the Session Manager key -> smss TOML.
//!
//! Two pure steps: [`parse`] turns the bytes into keys and values with their line numbers
//! (every encoding regedit, `reg export` and hand-written tweak files use), and [`translate`]
//! maps the values of `Control\Session Manager` (and `Control\CrashControl`) onto the smss
//! schema, naming everything it leaves out. [`import`] does both and then runs the result
//! through the real configuration validator, so what it returns is always a configuration
//! `smss check` accepts.

mod parse;
mod translate;

use std::path::Path;

pub use parse::{
    parse, render_file, render_value, Data, Encoding, Key, Problem, RegFile, Value, Version,
    HEADER_V4, HEADER_V5, MAX_KEY_PATH_CHARS, MAX_NAME_CHARS, MAX_PROBLEMS, MAX_REG_FILE_SIZE,
    MAX_VALUE_SIZE, REG_BINARY,
};
pub use translate::{
    parse_drive_flag, split_multi_sz, translate, Imported, Options, MAX_COMMENT_BYTES,
};

/// Parses, translates and validates. Errors are the file's problems, each with its line.
pub fn import(bytes: &[u8], opts: &Options) -> Result<Imported, Vec<Problem>> {
    let file = parse(bytes)?;
    let imported = translate(&file, opts);
    // The generated TOML goes through the same validator as `smss check`: a failure here is a
    // bug in the translator, reported rather than written.
    if imported.toml.len() as u64 > crate::MAX_CONFIG_SIZE {
        return Err(vec![Problem {
            line: 0,
            message: format!(
                "the translation is {} bytes, more than the {} bytes a configuration may take (`smss check` would refuse it): the file has too many values to import at once",
                imported.toml.len(),
                crate::MAX_CONFIG_SIZE
            ),
        }]);
    }
    match crate::parse_str(&imported.toml, Path::new("generated.toml")) {
        Ok(_) => Ok(imported),
        Err(diags) => Err(diags
            .iter()
            .map(|d| Problem {
                line: 0,
                message: format!(
                    "internal error: the generated configuration does not validate: {d}"
                ),
            })
            .collect()),
    }
}
