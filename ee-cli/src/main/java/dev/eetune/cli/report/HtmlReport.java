package dev.eetune.cli.report;

import dev.eetune.eval.ExitEvaluator;
import dev.eetune.eval.ThresholdSweep;
import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.CategoryChart;
import org.knowm.xchart.CategoryChartBuilder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.XYSeries;
import org.knowm.xchart.internal.chartpart.Chart;
import org.knowm.xchart.style.Styler;
import org.knowm.xchart.style.markers.SeriesMarkers;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;

/**
 * A self-contained HTML report of a run ({@code --report DIR}): report.html with its PNG charts beside it, drawn by
 * XChart. Sections are added in the order they should appear; {@link #write} renders everything at once. Not
 * thread-safe.
 */
public final class HtmlReport {
    private static final int WIDTH = 800, HEIGHT = 450;

    private final String title;
    private final List<String> body = new ArrayList<>();
    private final List<Chart<?, ?>> charts = new ArrayList<>();
    private final List<String> chartFiles = new ArrayList<>();

    public HtmlReport(String title) { this.title = title; }

    /** A heading with preformatted text under it (a table as the command printed it). */
    public HtmlReport text(String heading, String preformatted) {
        body.add("<h2>" + escape(heading) + "</h2>\n<pre>" + escape(preformatted) + "</pre>");
        return this;
    }

    /** Training loss curves, one line per series (e.g. per exit). */
    public HtmlReport lossCurves(LossCurves curves) {
        if (curves.isEmpty()) return this;
        XYChart c = new XYChartBuilder().width(WIDTH).height(HEIGHT).title(curves.title()).xAxisTitle("step").yAxisTitle("loss (nats/token)").build();
        style(c);
        for (String name : curves.names()) {
            double[][] s = curves.series(name);
            XYSeries series = c.addSeries(name, s[0], s[1]);
            series.setMarker(s[0].length > 40 ? SeriesMarkers.NONE : SeriesMarkers.CIRCLE);
        }
        return chart(c, curves.title());
    }

    /** Validation loss per exit (and the final layer). */
    public HtmlReport validationLoss(ExitEvaluator.Report report) {
        CategoryChart c = new CategoryChartBuilder().width(WIDTH).height(HEIGHT).title("Validation loss per exit").xAxisTitle("exit layer")
            .yAxisTitle("loss (nats/token)").build();
        style(c);
        c.getStyler().setLegendVisible(false);
        List<String> names = new ArrayList<>();
        List<Double> losses = new ArrayList<>();
        for (ExitEvaluator.ExitMetrics m : report.exits()) {
            names.add(m.architecture().equals("final") ? "final (" + m.layer() + ")" : m.layer() + " (" + m.architecture() + ")");
            losses.add(m.loss());
        }
        c.addSeries("validation loss", names, losses);
        return chart(c, "Validation loss per exit")
            .text("Validation metrics", report.toTable());
    }

    /** The sweep: speed-up against teacher-forced agreement, share of tokens per exit, layers per token, over thresholds. */
    public HtmlReport sweep(ThresholdSweep.Result r) {
        List<ThresholdSweep.Row> ee = r.rows().stream().filter(row -> row.mode().equals("early-exit")).toList();
        if (ee.isEmpty()) return text("Threshold sweep", r.toTable());
        XYChart speed = new XYChartBuilder().width(WIDTH).height(HEIGHT).title("Speed-up vs agreement over thresholds").xAxisTitle("agreement with the full model (teacher-forced, %)")
            .yAxisTitle("measured speed-up (x)").build();
        style(speed);
        List<ThresholdSweep.Row> byAgreement = ee.stream().sorted(java.util.Comparator.comparingDouble(ThresholdSweep.Row::teacherForcedAgreement)).toList();
        double[] agreement = byAgreement.stream().mapToDouble(row -> 100 * row.teacherForcedAgreement()).toArray();
        speed.addSeries("median speed-up", agreement, byAgreement.stream().mapToDouble(ThresholdSweep.Row::speedup).toArray());
        speed.addSeries("slowest round", agreement, byAgreement.stream().mapToDouble(ThresholdSweep.Row::speedupLow).toArray())
            .setXYSeriesRenderStyle(XYSeries.XYSeriesRenderStyle.Scatter).setMarker(SeriesMarkers.TRIANGLE_DOWN);
        speed.addSeries("fastest round", agreement, byAgreement.stream().mapToDouble(ThresholdSweep.Row::speedupHigh).toArray())
            .setXYSeriesRenderStyle(XYSeries.XYSeriesRenderStyle.Scatter).setMarker(SeriesMarkers.TRIANGLE_UP);
        speed.addSeries("no speed-up", new double[] {agreement[0], agreement[agreement.length - 1]}, new double[] {1, 1}).setMarker(SeriesMarkers.NONE);
        chart(speed, "Speed-up vs agreement over thresholds");

        // the calibrated row has per-exit thresholds (its threshold is NaN)
        List<String> taus = ee.stream().map(row -> Float.isNaN(row.threshold()) ? row.mode() : String.format(Locale.ROOT, "%.2f", row.threshold())).toList();
        CategoryChart share = new CategoryChartBuilder().width(WIDTH).height(HEIGHT).title("Share of tokens per exit").xAxisTitle("threshold").yAxisTitle("share of tokens (%)").build();
        style(share);
        share.getStyler().setStacked(true);
        int[] layers = r.exitLayers();
        for (int i = 0; i <= layers.length; i++) {
            int col = i;
            share.addSeries(i < layers.length ? "exit " + layers[i] : "final layer", taus, ee.stream().map(row -> 100 * row.exitShare()[col]).toList());
        }
        chart(share, "Share of tokens per exit");

        CategoryChart depth = new CategoryChartBuilder().width(WIDTH).height(HEIGHT).title("Layers per token").xAxisTitle("threshold").yAxisTitle("layers run per token").build();
        style(depth);
        depth.getStyler().setLegendVisible(false);
        depth.addSeries("layers per token", taus, ee.stream().map(ThresholdSweep.Row::layersPerToken).toList());
        chart(depth, "Layers per token");
        return text("Threshold sweep", r.toTable());
    }

    private static void style(Chart<?, ?> c) {
        c.getStyler().setLegendPosition(Styler.LegendPosition.InsideNE);
        c.getStyler().setChartBackgroundColor(java.awt.Color.WHITE);
    }

    private HtmlReport chart(Chart<?, ?> c, String caption) {
        String file = "chart-" + (charts.size() + 1) + ".png";
        charts.add(c);
        chartFiles.add(file);
        body.add("<figure><img src=\"" + file + "\" alt=\"" + escape(caption) + "\" width=\"" + WIDTH + "\" height=\"" + HEIGHT + "\"><figcaption>" + escape(caption)
            + "</figcaption></figure>");
        return this;
    }

    /** Writes report.html and the charts into {@code dir} (created if needed); returns report.html's path. */
    public Path write(Path dir) {
        try {
            Files.createDirectories(dir);
            for (int i = 0; i < charts.size(); i++) BitmapEncoder.saveBitmap(charts.get(i), dir.resolve(chartFiles.get(i)).toString(), BitmapEncoder.BitmapFormat.PNG);
            String html = "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" + escape(title) + "</title>\n<style>body{font-family:sans-serif;max-width:"
                + (WIDTH + 40) + "px;margin:auto}pre{font-size:12px;overflow-x:auto;background:#f6f6f6;padding:8px}figure{margin:16px 0}</style></head>\n<body>\n<h1>"
                + escape(title) + "</h1>\n" + String.join("\n", body) + "\n</body></html>\n";
            Path out = dir.resolve("report.html");
            Files.writeString(out, html, StandardCharsets.UTF_8);
            return out;
        } catch (IOException e) {
            throw new UncheckedIOException("--report " + dir + ": cannot write the report: " + e.getMessage(), e);
        }
    }

    private static String escape(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\"", "&quot;");
    }
}
