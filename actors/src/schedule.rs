//! Daily jobs of the cluster: at the time a setting names, every node
//! proposes the day's job; the state machine takes the first proposal of
//! each day, so a job runs once a day whichever nodes are up. One actor per
//! node; the jobs themselves happen where their commands are applied (the
//! spam reports are learned in the state machine) or where a node watches
//! the result (antivirus updates: `content::updater`).

use actix::prelude::*;
use consensus::state::counters::DAY_MS;
use consensus::state::settings::{key, parse_time_of_day, Key};
use consensus::{AppliedState, Command, Outcome, Proposer, ReadHandle};
use std::time::Duration;

use crate::queue::now_ms;

const TICK: Duration = Duration::from_secs(1);

/// A daily job: the setting with its time, the day last done, the command;
/// and, for a job whose command only claims the day, what the node whose
/// claim won does then.
struct Job {
    at: Key<String>,
    done_day: fn(&AppliedState) -> u64,
    command: fn(u64) -> Command,
    won: Option<fn(ReadHandle, Proposer) -> futures::future::BoxFuture<'static, ()>>,
}

const JOBS: &[Job] = &[
    Job {
        at: key::ANTIVIRUS_UPDATE_AT,
        done_day: |s| s.state.antivirus.scheduled_day,
        command: |day| Command::ScheduleAntivirusUpdate { day },
        won: None,
    },
    Job {
        at: key::SPAM_LEARN_REPORTS_AT,
        done_day: |s| s.state.spam.reports_learned_day,
        command: |day| Command::LearnPendingReports { day },
        won: None,
    },
    Job {
        at: key::SPAM_UPDATE_AT,
        done_day: |s| s.state.spam.rules_update_day,
        command: |day| Command::ClaimSpamRuleUpdate { day },
        won: Some(|read, proposer| Box::pin(fetch_rule_pack(read, proposer))),
    },
];

pub struct DailySchedule {
    pub read: ReadHandle,
    pub proposer: Proposer,
}

impl Actor for DailySchedule {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(TICK, |act, _| act.tick());
    }
}

impl DailySchedule {
    fn tick(&mut self) {
        let applied = self.read.load();
        let now = now_ms();
        for job in JOBS {
            if let Some(day) = due_day(&applied.state.settings.text(job.at), now, (job.done_day)(&applied)) {
                let (proposer, command) = (self.proposer.clone(), (job.command)(day));
                let (read, won) = (self.read.clone(), job.won);
                actix::spawn(async move {
                    match proposer.propose(command).await {
                        Ok(Outcome::Claimed { claimed: true }) => {
                            if let Some(won) = won {
                                won(read, proposer).await;
                            }
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "daily job not proposed"),
                    }
                });
            }
        }
    }
}

/// `spam.update_at`: this node won the day's claim, so it fetches the rule pack.
async fn fetch_rule_pack(read: ReadHandle, proposer: Proposer) {
    match crate::spam::rules::pack::update(&read, &proposer).await {
        Ok(p) => tracing::info!(version = %p.version, rules = p.rules, changed = p.changed, "spam rule pack updated"),
        Err(e) => tracing::warn!(error = %e, "spam rule pack update failed"),
    }
}

/// The day to propose, when `at` (HH:MM UTC) has passed today and today's
/// job is not done yet.
fn due_day(at: &str, now_ms: u64, done_day: u64) -> Option<u64> {
    let (h, m) = parse_time_of_day(at)?;
    let day = now_ms / DAY_MS;
    let past = now_ms % DAY_MS >= u64::from(h * 3600 + m * 60) * 1000;
    (past && done_day < day).then_some(day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_once_the_time_has_passed_and_not_done_today() {
        let day = 20_000 * DAY_MS;
        assert_eq!(due_day("", day + DAY_MS / 2, 0), None, "no time set");
        assert_eq!(due_day("03:30", day + 3 * 3_600_000, 0), None, "before 03:30");
        assert_eq!(due_day("03:30", day + 4 * 3_600_000, 0), Some(20_000));
        assert_eq!(due_day("03:30", day + 4 * 3_600_000, 20_000), None, "done today");
    }
}
