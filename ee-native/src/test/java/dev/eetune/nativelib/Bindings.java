package dev.eetune.nativelib;

import dev.eetune.backend.spi.Binding;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

/** Test helpers: the bindings this JVM can run (FFM on JDK 22+, JNA always) and fresh random inputs. */
final class Bindings {
    private Bindings() {}

    /** Every binding available here; on JDK 17 that is JNA alone (FFM does not exist there, nothing is skipped). */
    static List<Binding> available() {
        List<Binding> out = new ArrayList<>();
        if (Ffm.unavailableReason() == null) out.add(Binding.FFM);
        out.add(Binding.JNA);
        return out;
    }

    /** A fresh seed per test run, printed so a failure can be reproduced. */
    static Random random(String test) {
        long seed = System.nanoTime();
        System.out.println(test + " seed " + seed);
        return new Random(seed);
    }

    static float[] randn(Random r, int n) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) r.nextGaussian();
        return a;
    }

    /** max |a - ref| / max |ref| (relative to the reference's scale, so near-zero entries do not dominate). */
    static double relError(float[] a, double[] ref) {
        double num = 0, den = 1e-30;
        for (int i = 0; i < ref.length; i++) {
            num = Math.max(num, Math.abs(a[i] - ref[i]));
            den = Math.max(den, Math.abs(ref[i]));
        }
        return num / den;
    }
}
