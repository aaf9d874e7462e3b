//! Identity: accounts and users (`users`), the password login of seed 004 (`auth`),
//! password hashing (`passwords`) and the throttle every credential check goes through
//! (`throttle`).

pub mod auth;
pub mod directory;
pub mod passwords;
pub mod throttle;
pub mod users;
