//! The suite's domains, each in its own file: what a deployment of that kind looks like
//! (tools, trust, sinks, its own policies), what users ask of it, and how it is attacked.

mod banking;
mod calendar;
mod drive;
mod email;
mod helpdesk;
mod notes;
mod slack;
mod travel;

use super::scenarios::Domain;

pub fn all() -> Vec<Domain> {
    vec![
        banking::domain(),
        email::domain(),
        calendar::domain(),
        drive::domain(),
        slack::domain(),
        travel::domain(),
        notes::domain(),
        helpdesk::domain(),
    ]
}
