/** The consumer as a named module: the eetune jars are automatic modules (their Automatic-Module-Name). */
module consumer {
    requires dev.eetune.api;
    requires dev.eetune.nativelib;
}
