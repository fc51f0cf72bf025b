//! Campaigns: many experiments (plans × matrix × repeat) run one after another or one per
//! slot, recorded in `<out>/campaign_manifest.json`, resumable after any interruption.

pub mod before_each;
pub mod cli;
pub mod load;
pub mod model;
pub mod record;
mod resume;
pub mod runner;
mod worker;

pub use load::{load_campaign, Campaign, Experiment};
pub use model::campaign_schema_json;
