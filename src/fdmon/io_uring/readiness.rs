//! Readiness of the io_uring monitor's fds (see "Level-triggered, never
//! stale" in `fdmon/io_uring.rs`): poll completions become fresh reports,
//! due level checks or error reports; fresh ones are reported as they are,
//! and the level set is checked with one `poll(2)`.
//!
//! Threading: as the monitor (the thread polling the context).

use std::io;

use ::io_uring::cqueue;

use super::{ERR_HUP, IoUringMonitor, LEVEL_CHECK_EVERY, UD_IGNORED, poll_add, split_user_data};
use crate::fdmon::{REVENTS_MASK, Ready, cvt};

impl IoUringMonitor {
    /// Reports the fds with fresh completions (see the module docs).
    fn report_fresh(&mut self, ready: &mut Vec<Ready>) {
        let wait_no = self.waits;
        for (fd, generation) in self.fresh.drain(..) {
            let Some(w) = self.watched.get_mut(fd) else {
                continue;
            };
            let events = std::mem::take(&mut w.fresh) & (w.interest | ERR_HUP);
            if w.generation != generation || w.broken {
                continue;
            }
            if events == 0 {
                // Nothing the caller asked for; if the poll ended, the
                // level check arms it again.
                if !w.armed && !w.in_level {
                    w.in_level = true;
                    self.level.push((fd, generation));
                    self.level_due = true;
                }
                continue;
            }
            w.reported = wait_no;
            ready.push(Ready {
                fd,
                revents: events,
            });
            if !w.in_level {
                w.in_level = true;
                self.level.push((fd, generation));
            }
        }
    }

    /// Asks `poll(2)` about the level set; appends the fds still ready
    /// (unless this wait reported them already). Idle ones leave the set
    /// (and get their poll armed again if it had ended).
    fn check_level(&mut self, ready: &mut Vec<Ready>) -> io::Result<()> {
        self.level_due = false;
        self.level_age = 0;
        let watched = &self.watched;
        self.level.retain(|&(fd, generation)| {
            watched
                .get(fd)
                .is_some_and(|w| w.generation == generation && w.in_level && !w.broken)
        });
        if self.level.is_empty() {
            return Ok(());
        }
        self.pollfds.clear();
        self.pollfds
            .extend(self.level.iter().map(|&(fd, _)| libc::pollfd {
                fd,
                events: watched.get(fd).expect("kept above").interest as libc::c_short,
                revents: 0,
            }));
        // SAFETY: `pollfds` is a valid array of `len` pollfds the kernel may
        // write `revents` into.
        let res = unsafe {
            libc::poll(
                self.pollfds.as_mut_ptr(),
                self.pollfds.len() as libc::nfds_t,
                0,
            )
        };
        match cvt(res) {
            Ok(_) => {}
            // Checked again by the next wait: the set stays.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.level_due = true;
                return Ok(());
            }
            Err(e) => return Err(e),
        }
        let wait_no = self.waits;
        let mut i = 0;
        let (watched, backlog) = (&mut self.watched, &mut self.backlog);
        let pollfds = &self.pollfds;
        self.level.retain(|&(fd, generation)| {
            let revents = pollfds[i].revents as u32;
            i += 1;
            let w = watched.get_mut(fd).expect("kept above");
            if revents & libc::POLLNVAL as u32 != 0 {
                // Closed behind our back: stop (see the module docs).
                w.broken = true;
                w.in_level = false;
                return false;
            }
            if revents != 0 {
                if w.reported != wait_no {
                    w.reported = wait_no;
                    ready.push(Ready {
                        fd,
                        revents: revents & REVENTS_MASK,
                    });
                }
                return true;
            }
            w.in_level = false;
            if !w.armed {
                backlog.push(poll_add(fd, w.interest, generation));
                w.armed = true;
            }
            false
        });
        Ok(())
    }

    /// Reports what this wait has: error reports, fresh completions, and
    /// the level set when its check is due (see the module docs).
    pub(super) fn collect(&mut self, ready: &mut Vec<Ready>, first: usize) -> io::Result<()> {
        ready.append(&mut self.errors);
        self.report_fresh(ready);
        if self.level_due || ready.len() == first || self.level_age >= LEVEL_CHECK_EVERY {
            self.check_level(ready)
        } else {
            self.level_age += u32::from(!self.level.is_empty());
            Ok(())
        }
    }

    /// Handles one poll completion; returns whether it was stale.
    pub(super) fn complete(&mut self, ud: u64, res: i32, flags: u32) -> bool {
        if ud == UD_IGNORED {
            return false;
        }
        let (fd, generation) = split_user_data(ud);
        let Some(w) = self.watched.get_mut(fd) else {
            return true; // removed since
        };
        if w.generation != generation || !w.armed {
            return true; // re-added or changed since
        }
        if !cqueue::more(flags) {
            w.armed = false; // armed again once the fd is found idle
        }
        match res {
            // Woken since its handler last ran: fresh, reported as is.
            r if r > 0 && w.reported + 1 != self.waits => {
                if w.fresh == 0 {
                    self.fresh.push((fd, generation));
                }
                w.fresh |= r as u32;
            }
            // Maybe from before its handler's read (reported by the
            // previous wait), or without events; or cancelled by something
            // other than our POLL_REMOVE (those carry old generations),
            // e.g. the submitting thread exited: the level check decides,
            // and arms it again if idle.
            r if r >= 0 || r == -libc::ECANCELED => {
                if !w.broken {
                    if !w.in_level {
                        w.in_level = true;
                        self.level.push((fd, generation));
                    }
                    self.level_due = true;
                }
            }
            // Closed before the poll was submitted: stop, don't spin.
            r if r == -libc::EBADF => {
                w.armed = false;
                w.broken = true;
            }
            // Unexpected: let the handler see an error once; no re-arm.
            _ => {
                w.armed = false;
                if !w.broken {
                    w.broken = true;
                    self.errors.push(Ready {
                        fd,
                        revents: libc::POLLERR as u32,
                    });
                }
            }
        }
        false
    }
}
