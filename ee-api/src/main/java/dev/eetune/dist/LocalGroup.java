package dev.eetune.dist;

import dev.eetune.tensor.Tensor;

/** The group of one process started without a launcher: every collective is the identity and nothing is loaded. */
public final class LocalGroup implements ProcessGroup {
    public static final LocalGroup INSTANCE = new LocalGroup();

    private LocalGroup() {}

    @Override public int rank() { return 0; }

    @Override public int size() { return 1; }

    @Override public void allReduceSum(Tensor t) {}

    @Override public void allReduceSum(double[] values) {}

    @Override public void broadcast(Tensor t, int root) { requireRoot(root); }

    @Override public byte[] broadcast(byte[] bytes, int root) {
        requireRoot(root);
        return bytes;
    }

    @Override public void send(Tensor t, int peer, int tag) { throw new IllegalArgumentException("send to rank " + peer + ": a single process has no peers"); }

    @Override public void recv(Tensor t, int peer, int tag) { throw new IllegalArgumentException("recv from rank " + peer + ": a single process has no peers"); }

    @Override public void barrier() {}

    @Override public long bytesSent() { return 0; }

    @Override public void abort(int code) { System.exit(code); }

    @Override public String describe() { return "a single process"; }

    @Override public void close() {}

    private static void requireRoot(int root) {
        if (root != 0) throw new IllegalArgumentException("broadcast root " + root + ": a single process is rank 0");
    }
}
