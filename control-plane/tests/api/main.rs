//! API tests of the control plane: the real app, in-process on an ephemeral port, over
//! HTTP, on SQLite and (with `DATABASE_URL=postgres://...`) PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod helpers;

mod audit;
mod auth;
mod bad_input;
mod cascade;
mod cli;
mod console;
mod explain;
mod keys;
mod login;
mod manage;
mod proxies;
mod service;
mod sessions;
mod sync;
mod throttle;
mod tokens;
mod usage;
mod users;
mod vouchers;
