/**
 * What backend modules build on, not what users call: loading a backend's native library ({@link
 * dev.eetune.backend.spi.NativeLibraryLoader}), choosing the binding ({@link dev.eetune.backend.spi.Binding}) and
 * reporting why a backend is unavailable ({@link dev.eetune.backend.spi.NativeBackendLoader}, {@link
 * dev.eetune.backend.spi.NativeBackendProvider}).
 */
package dev.eetune.backend.spi;
