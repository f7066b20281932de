package dev.eetune.cli.report;

import java.util.ArrayList;
import java.util.List;

/**
 * Loss over training steps, one series per output (the final layer, each exit, validation), as a run records it;
 * a series may skip steps (validation is measured now and then). Not thread-safe: one training loop fills it.
 */
public final class LossCurves {
    private final String title;
    private final List<String> names = new ArrayList<>();
    private final List<List<double[]>> points = new ArrayList<>(); // per series: {step, loss}

    public LossCurves(String title) { this.title = title; }

    public String title() { return title; }

    /** Adds a point to the series {@code name} (made on first use); non-finite losses (skipped steps) are left out. */
    public void add(String name, int step, double loss) {
        if (!Double.isFinite(loss)) return;
        int i = names.indexOf(name);
        if (i < 0) {
            names.add(name);
            points.add(new ArrayList<>());
            i = names.size() - 1;
        }
        points.get(i).add(new double[] {step, loss});
    }

    public List<String> names() { return List.copyOf(names); }

    /** The series' steps and losses: {steps[], losses[]}. */
    public double[][] series(String name) {
        List<double[]> p = points.get(names.indexOf(name));
        double[][] out = new double[2][p.size()];
        for (int k = 0; k < p.size(); k++) {
            out[0][k] = p.get(k)[0];
            out[1][k] = p.get(k)[1];
        }
        return out;
    }

    public boolean isEmpty() { return names.isEmpty(); }
}
