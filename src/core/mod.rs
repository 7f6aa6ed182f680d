//! The pure core: what an item is, how input is validated, how an answer is classified, what to
//! do next, and how a request is rendered. No I/O, no clock, no runtime: every input is an
//! argument (tests/it/architecture.rs parses these files and fails on any path that does I/O).

pub mod classify;
pub mod codes;
pub mod dispatch;
pub mod duration;
pub mod failure;
pub mod http_url;
pub mod intake;
pub mod item;
pub mod mapping;
pub mod policy;
pub mod secret;
pub mod text;
