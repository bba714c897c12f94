//! The rules of the contacts service, free of tonic and sea-orm types.

pub mod contact;
pub mod error;
pub mod filter;
pub mod interaction;
pub mod time;

pub use clm_runtime::page_token;
pub use contact::{Consent, Contact, ContactFields, ContactUpdate};
pub use error::ContactsError;
pub use interaction::{Interaction, Money};
