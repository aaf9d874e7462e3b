//! Identity: accounts and their plans (`accounts`), users (`users`, `directory`), the
//! password login of seed 004 (`auth`), seed 002's login with several security types
//! (`login`),
//! password hashing (`passwords`) and the throttle every credential check goes through
//! (`throttle`).

pub mod accounts;
pub mod auth;
pub mod directory;
pub mod login;
pub mod passwords;
pub mod throttle;
pub mod users;
