//! Which due pass runs next. A pass runs only in a slot (`--concurrency` of them); when one is
//! free, it goes to the namespace with waiting passes that runs the fewest, and among those to
//! the one served longest ago (round robin). Within a namespace, passes go first in, first
//! out. A namespace that runs passes takes a further slot only while fewer than `shared`
//! slots are taken (`--namespace-concurrency`): the rest stay free for namespaces that run
//! none, so that a slot that a hanging store holds (nothing can take it back) is never one a
//! newcomer needed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The slots and the passes that wait for them: plain state, no clock, no I/O.
#[derive(Debug)]
pub struct Turns<T> {
    capacity: usize,
    shared: usize,
    running: usize,
    namespaces: HashMap<String, Namespace<T>>,
    // Stamps joins and grants, so that among namespaces running as many passes the one served
    // (or arrived) longest ago goes first.
    clock: u64,
}

#[derive(Debug)]
struct Namespace<T> {
    running: usize,
    waiting: VecDeque<T>,
    served: u64,
}

impl<T> Turns<T> {
    /// `capacity` slots, of which namespaces that already run a pass may fill `shared`
    /// (both at least 1; `shared` at most `capacity`).
    pub fn new(capacity: usize, shared: usize) -> Self {
        let capacity = capacity.max(1);
        Turns {
            capacity,
            shared: shared.clamp(1, capacity),
            running: 0,
            namespaces: HashMap::new(),
            clock: 0,
        }
    }

    /// A pass of `namespace` waits for its turn, behind the namespace's earlier ones.
    pub fn wait(&mut self, namespace: &str, pass: T) {
        self.clock += 1;
        let clock = self.clock;
        self.namespaces
            .entry(namespace.to_owned())
            .or_insert_with(|| Namespace {
                running: 0,
                waiting: VecDeque::new(),
                served: clock,
            })
            .waiting
            .push_back(pass);
    }

    /// The pass that takes a free slot now, if any may: the next of the namespace that runs
    /// the fewest (served longest ago among equals), unless it runs one already and the shared
    /// slots are taken.
    pub fn next(&mut self) -> Option<(String, T)> {
        if self.running >= self.capacity {
            return None;
        }
        let (name, namespace) = self
            .namespaces
            .iter_mut()
            .filter(|(_, n)| !n.waiting.is_empty())
            .min_by_key(|(_, n)| (n.running, n.served))?;
        if namespace.running > 0 && self.running >= self.shared {
            return None;
        }
        let pass = namespace.waiting.pop_front()?;
        self.clock += 1;
        namespace.served = self.clock;
        namespace.running += 1;
        self.running += 1;
        Some((name.clone(), pass))
    }

    /// A pass of `namespace` ended; its slot is free.
    pub fn done(&mut self, namespace: &str) {
        if let Some(n) = self.namespaces.get_mut(namespace)
            && n.running > 0
        {
            n.running -= 1;
            self.running -= 1;
            if n.running == 0 && n.waiting.is_empty() {
                self.namespaces.remove(namespace);
            }
        }
    }

    /// Every waiting pass, taken out of line.
    pub fn drain(&mut self) -> Vec<T> {
        let waiting = self
            .namespaces
            .values_mut()
            .flat_map(|n| n.waiting.drain(..))
            .collect();
        self.namespaces.retain(|_, n| n.running > 0);
        waiting
    }

    /// Passes running.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.running
    }
}

/// [`Turns`] for passes that run concurrently: a pass awaits [`Scheduler::turn`] and holds the
/// [`Turn`] while it runs.
#[derive(Debug)]
pub struct Scheduler {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    turns: Turns<oneshot::Sender<Turn>>,
    closed: bool,
}

/// A running pass's slot, given back when dropped.
#[derive(Debug)]
pub struct Turn {
    scheduler: Arc<Scheduler>,
    namespace: Option<String>,
}

impl Scheduler {
    /// `concurrency` slots; `per_namespace` of them (0: three quarters, at least one) for
    /// namespaces that already run a pass.
    pub fn new(concurrency: u16, per_namespace: u16) -> Self {
        let capacity = concurrency.max(1);
        let shared = match per_namespace {
            0 => (capacity * 3 / 4).max(1),
            n => n.min(capacity),
        };
        Scheduler {
            state: Mutex::new(State {
                turns: Turns::new(usize::from(capacity), usize::from(shared)),
                closed: false,
            }),
        }
    }

    /// Waits for a slot for a pass of `namespace`. None once the scheduler is closed.
    pub async fn turn(self: &Arc<Self>, namespace: &str) -> Option<Turn> {
        let (tx, rx) = oneshot::channel();
        {
            let mut state = self.state.lock().expect("turns poisoned");
            if state.closed {
                return None;
            }
            state.turns.wait(namespace, tx);
        }
        self.dispatch();
        // A pass dropped while it waits drops `rx`: its turn, if it was given, comes back.
        rx.await.ok()
    }

    /// Ends every wait: the passes that have not started end at once.
    pub fn close(&self) {
        let waiting = {
            let mut state = self.state.lock().expect("turns poisoned");
            state.closed = true;
            state.turns.drain()
        };
        drop(waiting);
    }

    /// Passes running now.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        self.state.lock().expect("turns poisoned").turns.running()
    }

    /// Gives every free slot that may be given.
    fn dispatch(self: &Arc<Self>) {
        loop {
            let Some((namespace, tx)) = self.state.lock().expect("turns poisoned").turns.next()
            else {
                return;
            };
            let turn = Turn {
                scheduler: self.clone(),
                namespace: Some(namespace),
            };
            if let Err(mut turn) = tx.send(turn) {
                // Its pass stopped waiting: the slot goes to the next.
                if let Some(namespace) = turn.namespace.take() {
                    self.state
                        .lock()
                        .expect("turns poisoned")
                        .turns
                        .done(&namespace);
                }
            }
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(namespace) = self.namespace.take() {
            self.scheduler
                .state
                .lock()
                .expect("turns poisoned")
                .turns
                .done(&namespace);
            self.scheduler.dispatch();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Grants every slot that may be granted; the namespaces served.
    fn grant_all(turns: &mut Turns<u32>) -> Vec<(String, u32)> {
        std::iter::from_fn(|| turns.next()).collect()
    }

    fn wait_many(turns: &mut Turns<u32>, namespace: &str, passes: u32) {
        for pass in 0..passes {
            turns.wait(namespace, pass);
        }
    }

    fn count(granted: &[(String, u32)], namespace: &str) -> usize {
        granted.iter().filter(|(n, _)| n == namespace).count()
    }

    #[test]
    fn namespaces_that_hang_leave_a_slot_for_each_newcomer_up_to_a_quarter() {
        // 8 slots, 6 for namespaces that run passes already: two namespaces whose passes never
        // end come one after the other, and a third still starts at once.
        let mut turns = Turns::new(8, 6);
        wait_many(&mut turns, "tarpit-a", 32);
        assert_eq!(count(&grant_all(&mut turns), "tarpit-a"), 6);
        wait_many(&mut turns, "tarpit-b", 32);
        assert_eq!(count(&grant_all(&mut turns), "tarpit-b"), 1);
        turns.wait("healthy", 0);
        assert_eq!(grant_all(&mut turns), [("healthy".to_owned(), 0)]);
        turns.done("healthy");
        turns.wait("healthy", 1);
        assert_eq!(grant_all(&mut turns), [("healthy".to_owned(), 1)]);
    }

    #[test]
    fn a_freed_slot_goes_to_the_namespace_that_runs_the_fewest() {
        let mut turns = Turns::new(8, 6);
        wait_many(&mut turns, "a", 16);
        assert_eq!(count(&grant_all(&mut turns), "a"), 6);
        wait_many(&mut turns, "b", 16);
        assert_eq!(count(&grant_all(&mut turns), "b"), 1);
        // a runs 6, b 1, 7 slots of 8 are taken: a slot a frees stays free for newcomers.
        turns.done("a");
        assert!(grant_all(&mut turns).is_empty());
        // Below the shared 6, freed slots go to b until it runs as many as a.
        turns.done("a");
        turns.done("a");
        let granted = grant_all(&mut turns);
        assert_eq!(granted, [("b".to_owned(), 1), ("b".to_owned(), 2)]);
        turns.done("a");
        assert_eq!(grant_all(&mut turns), [("a".to_owned(), 6)]);
        // Running as many, they take turns: b was served longer ago.
        turns.done("a");
        turns.done("b");
        let granted = grant_all(&mut turns);
        assert_eq!(granted, [("b".to_owned(), 3), ("a".to_owned(), 7)]);
    }

    #[test]
    fn a_lone_namespace_fills_the_shared_slots_in_order_and_all_of_them_when_told() {
        let mut turns = Turns::new(16, 12);
        wait_many(&mut turns, "a", 20);
        let granted: Vec<u32> = grant_all(&mut turns).into_iter().map(|(_, p)| p).collect();
        assert_eq!(granted, (0..12).collect::<Vec<_>>());
        let mut turns = Turns::new(16, 16);
        wait_many(&mut turns, "a", 20);
        assert_eq!(grant_all(&mut turns).len(), 16);
    }

    #[test]
    fn the_default_share_is_three_quarters_and_a_cap_above_the_slots_is_the_slots() {
        let shared = |concurrency, per_namespace| {
            let s = Scheduler::new(concurrency, per_namespace);
            s.state.lock().unwrap().turns.shared
        };
        assert_eq!(shared(16, 0), 12);
        assert_eq!(shared(4, 0), 3);
        assert_eq!(shared(1, 0), 1);
        assert_eq!(shared(4, 9), 4);
        assert_eq!(shared(8, 2), 2);
    }

    #[derive(Clone, Debug)]
    enum Step {
        Wait(usize),
        Finish(usize),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                3 => (0usize..5).prop_map(Step::Wait),
                2 => any::<usize>().prop_map(Step::Finish),
            ],
            0..300,
        )
    }

    /// What the model checks at every grant, and keeps between them.
    struct Model {
        turns: Turns<u32>,
        capacity: usize,
        shared: usize,
        running: Vec<usize>,
        waiting: Vec<Vec<u32>>,
        next_pass: Vec<u32>,
        // Grants to others since each namespace last waited with nothing running.
        passed_over: Vec<usize>,
    }

    impl Model {
        fn new(capacity: usize, shared: usize) -> Self {
            Model {
                turns: Turns::new(capacity, shared),
                capacity,
                shared,
                running: vec![0; 5],
                waiting: vec![Vec::new(); 5],
                next_pass: vec![0; 5],
                passed_over: vec![0; 5],
            }
        }

        fn wait(&mut self, ns: usize) {
            let pass = self.next_pass[ns];
            self.next_pass[ns] += 1;
            self.turns.wait(&ns.to_string(), pass);
            self.waiting[ns].push(pass);
        }

        fn finish(&mut self, pick: usize) {
            let busy: Vec<usize> = (0..5).filter(|&n| self.running[n] > 0).collect();
            if let Some(&ns) = busy.get(pick % busy.len().max(1)) {
                self.turns.done(&ns.to_string());
                self.running[ns] -= 1;
            }
        }

        fn grant(&mut self) -> Result<(), TestCaseError> {
            while let Some((name, pass)) = self.turns.next() {
                let ns: usize = name.parse().unwrap();
                let total: usize = self.running.iter().sum();
                let waiters: Vec<usize> = (0..5).filter(|&n| !self.waiting[n].is_empty()).collect();
                prop_assert!(total < self.capacity, "a slot was free");
                prop_assert_eq!(self.waiting[ns].remove(0), pass, "first in, first out");
                // No waiting namespace runs fewer than the one served.
                for &other in &waiters {
                    prop_assert!(self.running[ns] <= self.running[other]);
                }
                // So while others wait it stays within its share of the slots.
                if waiters.len() > 1 {
                    prop_assert!(self.running[ns] < self.capacity.div_ceil(waiters.len()));
                }
                // A namespace that runs passes takes none of the slots kept for newcomers.
                prop_assert!(self.running[ns] == 0 || total < self.shared);
                for &other in &waiters {
                    if other != ns && self.running[other] == 0 {
                        self.passed_over[other] += 1;
                        // Round robin: a namespace with nothing running is passed over by
                        // each other namespace at most once.
                        prop_assert!(self.passed_over[other] < 5);
                    }
                }
                self.passed_over[ns] = 0;
                self.running[ns] += 1;
            }
            Ok(())
        }

        /// No slot stays free that a waiting pass may take.
        fn check_idle(&self) -> Result<(), TestCaseError> {
            let total: usize = self.running.iter().sum();
            prop_assert_eq!(total, self.turns.running());
            let newcomer_waits =
                (0..5).any(|n| self.running[n] == 0 && !self.waiting[n].is_empty());
            let any_waits = self.waiting.iter().any(|w| !w.is_empty());
            prop_assert!(total == self.capacity || !newcomer_waits);
            prop_assert!(total >= self.shared || !any_waits);
            Ok(())
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn every_namespace_gets_its_share_in_order_and_nobody_starves(
            capacity in 1usize..10,
            shared_cut in 0usize..10,
            steps in steps(),
        ) {
            let shared = capacity.saturating_sub(shared_cut).max(1);
            let mut model = Model::new(capacity, shared);
            for step in steps {
                match step {
                    Step::Wait(ns) => model.wait(ns),
                    Step::Finish(pick) => model.finish(pick),
                }
                model.grant()?;
                model.check_idle()?;
            }
            // As passes end, every waiting pass runs.
            for _ in 0..2000 {
                if model.waiting.iter().all(Vec::is_empty) {
                    break;
                }
                model.finish(0);
                model.grant()?;
                model.check_idle()?;
            }
            prop_assert!(model.waiting.iter().all(Vec::is_empty), "{:?}", model.waiting);
        }
    }

    #[tokio::test]
    async fn a_turn_dropped_or_never_taken_comes_back_and_close_ends_every_wait() {
        let scheduler = Arc::new(Scheduler::new(1, 0));
        let first = scheduler.turn("a").await.expect("a free slot");
        // A waiter that gives up before its turn leaves nothing taken.
        let gave_up = {
            let s = scheduler.clone();
            tokio::spawn(async move { s.turn("b").await.is_some() })
        };
        tokio::task::yield_now().await;
        gave_up.abort();
        let _ = gave_up.await;
        drop(first);
        assert_eq!(scheduler.running(), 0);
        let second = scheduler.turn("c").await.expect("the slot came back");
        let waiting = {
            let s = scheduler.clone();
            tokio::spawn(async move { s.turn("d").await.is_some() })
        };
        tokio::task::yield_now().await;
        scheduler.close();
        assert!(!waiting.await.unwrap(), "a closed scheduler gives no turn");
        assert!(scheduler.turn("e").await.is_none());
        drop(second);
        assert_eq!(scheduler.running(), 0);
    }
}
