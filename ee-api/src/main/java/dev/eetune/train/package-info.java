/**
 * EE-Tuning and pretraining.
 *
 * <p>Thread-safety of its types: {@code Tuner} is one thread at a time, checked (see its documentation); {@code AdamW}
 * and {@code Pretrainer} are one thread at a time; {@code TunerConfig}, {@code LrSchedule} and {@code StepReport} are
 * values (thread-safe); {@code Checkpoint}'s static methods run on the tuning thread, while no other thread uses the
 * heads and optimizer they read or write; a {@code TuningListener} is called on the tuning thread.
 */
package dev.eetune.train;
