//! # syncsets-machinery
//!
//! The API server's logic, free of HTTP and storage:
//!
//! ```text
//!   registry  kinds (built-in Rust types + CRDs) → resources, schemas, printer columns
//!   schema    structural schemas: validate, prune, default
//!   meta      object lifecycle: uid, generation, timestamps, metadata validation
//!   patch     JSON patch, JSON merge patch, strategic merge patch
//!   apply     server-side apply: field sets, managedFields, conflicts
//!   table     `as=Table` rendering, printer-column JSONPath
//!   openapi   OpenAPI v2 / v3 documents generated from the registry
//! ```

pub mod errors;
pub mod schema;

pub use errors::{Error, FieldError, Result};
pub mod apply;
pub mod builtin;
pub mod decode;
pub mod jsonpath;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
mod semantics;
pub mod strategies;
pub mod table;
