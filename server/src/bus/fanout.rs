//! Local fan-out, shared by both bus implementations: one broadcast channel per salon that has
//! subscribers (a room of the live channel, say), created with its first subscriber and dropped
//! after its last, and one channel for those who follow every salon (the activation trigger). A
//! change wakes only its salon's subscribers and the followers of all; a gap (the PostgreSQL
//! listener lost its connection) reaches everyone as [`Delivery::Gap`].

use super::SalonChanged;
use app::domain::SalonId;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use tokio::sync::broadcast;

/// How many events a follower of every salon may fall behind before it is told to resync.
const ALL_CAPACITY: usize = 1024;
/// The same for the subscribers of one salon.
const SALON_CAPACITY: usize = 64;

/// What travels on a local channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Changed(SalonChanged),
    /// Events may have been lost (the cross-instance listener reconnected): read everything again.
    Gap,
}

pub struct Fanout {
    all: broadcast::Sender<Delivery>,
    salons: Mutex<Salons>,
}

struct Salons {
    senders: HashMap<SalonId, broadcast::Sender<Delivery>>,
    /// Above this many channels the unsubscribed ones are swept (then it doubles the live count).
    sweep_at: usize,
}

impl Default for Fanout {
    fn default() -> Self {
        Self {
            all: broadcast::channel(ALL_CAPACITY).0,
            salons: Mutex::new(Salons {
                senders: HashMap::new(),
                sweep_at: 64,
            }),
        }
    }
}

impl Fanout {
    fn salons(&self) -> std::sync::MutexGuard<'_, Salons> {
        self.salons.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hands a change to its salon's subscribers and to the followers of all.
    pub fn deliver(&self, changed: SalonChanged) {
        let delivery = Delivery::Changed(changed);
        {
            let mut salons = self.salons();
            if let Some(sender) = salons.senders.get(&changed.salon) {
                if sender.send(delivery).is_err() {
                    // Its last subscriber left.
                    salons.senders.remove(&changed.salon);
                }
            }
        }
        // No receivers is fine: nobody follows every salon right now.
        let _ = self.all.send(delivery);
    }

    /// Tells every subscriber that events may have been lost.
    pub fn gap(&self) {
        let mut salons = self.salons();
        salons
            .senders
            .retain(|_, sender| sender.send(Delivery::Gap).is_ok());
        let _ = self.all.send(Delivery::Gap);
    }

    pub fn subscribe_salon(&self, salon: SalonId) -> broadcast::Receiver<Delivery> {
        let mut salons = self.salons();
        if salons.senders.len() >= salons.sweep_at {
            salons
                .senders
                .retain(|_, sender| sender.receiver_count() > 0);
            salons.sweep_at = (salons.senders.len() * 2).max(64);
        }
        salons
            .senders
            .entry(salon)
            .or_insert_with(|| broadcast::channel(SALON_CAPACITY).0)
            .subscribe()
    }

    pub fn subscribe_all(&self) -> broadcast::Receiver<Delivery> {
        self.all.subscribe()
    }

    /// Salons with a channel now (a test figure).
    #[cfg(test)]
    pub fn salon_channels(&self) -> usize {
        self.salons().senders.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use app::status::LiveEventKind;

    fn salon(id: i64) -> SalonId {
        SalonId::try_from(id).expect("positive")
    }

    fn changed(id: i64) -> SalonChanged {
        SalonChanged {
            salon: salon(id),
            kind: LiveEventKind::WhatsappState,
        }
    }

    #[test]
    fn a_change_reaches_only_its_salon_and_the_followers_of_all() {
        let fanout = Fanout::default();
        let mut one = fanout.subscribe_salon(salon(1));
        let mut two = fanout.subscribe_salon(salon(2));
        let mut all = fanout.subscribe_all();
        fanout.deliver(changed(1));
        assert_eq!(one.try_recv(), Ok(Delivery::Changed(changed(1))));
        assert!(two.try_recv().is_err(), "salon 2 is not woken by salon 1");
        assert_eq!(all.try_recv(), Ok(Delivery::Changed(changed(1))));
        fanout.gap();
        assert_eq!(one.try_recv(), Ok(Delivery::Gap));
        assert_eq!(two.try_recv(), Ok(Delivery::Gap));
        assert_eq!(all.try_recv(), Ok(Delivery::Gap));
    }

    #[test]
    fn a_salon_channel_goes_with_its_last_subscriber() {
        let fanout = Fanout::default();
        let first = fanout.subscribe_salon(salon(1));
        let second = fanout.subscribe_salon(salon(1));
        assert_eq!(fanout.salon_channels(), 1);
        drop(first);
        fanout.deliver(changed(1));
        assert_eq!(fanout.salon_channels(), 1, "one subscriber is left");
        drop(second);
        fanout.deliver(changed(1));
        assert_eq!(fanout.salon_channels(), 0);
        // Channels nobody publishes to are swept as new ones come.
        for id in 1..=200 {
            drop(fanout.subscribe_salon(salon(id)));
        }
        assert!(fanout.salon_channels() <= 64, "{}", fanout.salon_channels());
    }
}
