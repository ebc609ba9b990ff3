//! The model's membership and placement: the workers as membership lists
//! them, their changes, and each dispatch's placements checked against
//! them (driven through the same [`Model`](super::Model) as the others).

use super::*;

impl Model {
    /// Worker `i` up, with its first capacity and no backlog.
    pub(super) fn view(i: usize) -> MemberView {
        MemberView {
            id: worker(i),
            reachable: true,
            up: true,
            drain_reason: None,
            capacity: CAPACITY[i],
            kernels: vec!["reference".into()],
            backlog_limit: 0,
            state_text: "up".into(),
        }
    }

    /// Tells the core the list as the model holds it.
    pub(super) fn roster(&mut self) {
        let views = self.members.iter().flatten().cloned().collect();
        let fx = self.live.roster(views);
        self.effects(fx);
    }

    /// Membership changes worker `i`: 0 drains it, 1 resumes it (up, no
    /// drain), 2 marks it down, 3 changes its capacity, 4 removes it (its
    /// proxy, retired, reports its attempts lost), 5 lists it again.
    pub(super) fn member(&mut self, i: usize, change: u8) {
        match (change, &mut self.members[i]) {
            (0, Some(v)) => {
                if v.drain_reason.is_none() {
                    self.told_idle.remove(&v.id);
                }
                v.drain_reason = Some("drained on request".into());
            }
            (1, Some(v)) => {
                v.up = true;
                v.drain_reason = None;
            }
            (2, Some(v)) => v.up = false,
            (3, Some(v)) => v.capacity = v.capacity % 3 + 1,
            (4, Some(_)) => {
                // a cancel in progress takes its task's slot back itself,
                // from whichever worker holds that id then: the model
                // removes no worker while one of its tasks is mid-cancel
                let cancelling = self
                    .live
                    .attempts()
                    .any(|(t, w, _, _)| *w == worker(i) && self.pending_cancels.contains(t));
                if cancelling {
                    return;
                }
                self.members[i] = None;
                self.roster();
                let lost: Vec<(TaskId, AttemptId)> = self
                    .live
                    .attempts()
                    .filter(|(_, w, _, _)| **w == worker(i))
                    .map(|(t, _, a, _)| (t.clone(), a))
                    .collect();
                for (task_id, attempt_id) in lost {
                    if !self.pending_cancels.contains(&task_id) {
                        let seen = self.failed_on.entry(task_id.clone()).or_default();
                        if !seen.contains(&worker(i)) {
                            seen.push(worker(i));
                        }
                    }
                    let kind = OutcomeKind::Lost("worker removed".into());
                    let fx = self
                        .live
                        .outcome(&task_id, attempt_id, &worker(i), kind, self.now);
                    self.effects(fx);
                }
                return;
            }
            (5, None) => {
                self.told_idle.remove(&worker(i));
                self.members[i] = Some(Self::view(i));
            }
            _ => return,
        }
        self.roster();
    }

    /// Checks a dispatch's placements against membership and the tasks'
    /// failures.
    pub(super) fn dispatch(&mut self, max: usize) {
        let d = self.live.dispatch(max, self.now);
        assert!(
            !self.live.tasks.values().any(|t| t.state == TaskState::Placing),
            "nothing stays taken after a dispatch"
        );
        for s in &d.fx.send {
            let Outbound::Run {
                worker: w, task_id, ..
            } = s
            else {
                continue;
            };
            let i: usize = w.as_str()[1..].parse().unwrap();
            let v = self.members[i].as_ref().expect("placed on a listed worker");
            assert!(v.up && !v.draining(), "placed on {w}, which takes no tasks");
            assert!(
                self.live.loads.in_flight(w) <= v.capacity,
                "{w} holds more than its capacity"
            );
            let failed = self.failed_on.get(task_id).cloned().unwrap_or_default();
            let elsewhere = self
                .members
                .iter()
                .flatten()
                .any(|v| v.up && !v.draining() && !failed.contains(&v.id));
            assert!(
                !(elsewhere && failed.contains(w)),
                "{task_id} went back to {w}, which failed it, while another worker could take it"
            );
        }
        self.effects(d.fx);
    }
}
