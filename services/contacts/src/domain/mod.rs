//! The rules of the contacts service, free of tonic and sea-orm types.

pub mod contact;
pub mod error;
pub mod filter;
pub mod interaction;
pub mod page_token;
pub mod time;

pub use contact::{Consent, Contact, ContactFields, ContactUpdate};
pub use error::ContactsError;
pub use interaction::{Interaction, Money};
