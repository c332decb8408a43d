//! `plugins.toml`: which plugins exist, what each may touch, which tenant enabled what.
//!
//! The file is the operator's. It is validated as a whole at start-up and on every reload;
//! a broken file is reported with its path, line and the field at fault, and a reload that
//! fails validation keeps the previous configuration running.

mod model;
mod validate;

pub use model::*;
pub use validate::{ConfigError, EVENT_KINDS, load_file, parse_str, valid_id, valid_secret_name};
