// Batch decode vs batch 1 on one model (issue 10: batch 8 >= 5x batch 1 at the 15M config): the same 8 prompts
// decoded one at a time and all together, alternating, after warm-up calls. Prints per repeat, per batch, the decode
// tok/s over all sequences (wall) and the process's CPU time per decoded token, then the median (min..max) of the wall
// figures; with threads=1 the CPU time does not depend on other processes' load the way wall time does (their cache
// and memory traffic still count). Run by bench/batch.sh; -R-D properties: model, threads (2), tokens (200 new per
// prompt), repeats (3).
import dev.eetune.backend.*;
import dev.eetune.model.*;
import dev.eetune.infer.*;
import java.nio.file.*;
import java.util.*;

Backend be = Backends.cpu();
be.setThreads(Integer.getInteger("threads", 2));
LlamaModel m = LlamaModel.load(Path.of(System.getProperty("model")), be);
int newTokens = Math.min(Integer.getInteger("tokens", 200), m.config().maxSeqLen() - 3);
int reps = Integer.getInteger("repeats", 3);
// the prompts of PeerReport's warm works: BOS and two random tokens each (the same seed)
SplittableRandom r = new SplittableRandom(7);
List<int[]> prompts = new ArrayList<>();
for (int s = 0; s < 8; s++) prompts.add(new int[] {1, 3 + r.nextInt(m.config().vocabSize() - 3), 3 + r.nextInt(m.config().vocabSize() - 3)});
GenerationConfig cfg = GenerationConfig.greedy(newTokens, Set.of());
com.sun.management.OperatingSystemMXBean os = (com.sun.management.OperatingSystemMXBean) java.lang.management.ManagementFactory.getOperatingSystemMXBean();
Generator g1 = new Generator(m, 1, 3 + newTokens), g8 = new Generator(m, 8, 3 + newTokens);
// one batch-b round: tok/s over its decode time and CPU microseconds per decoded token (prefill excluded from tok/s only)
double[] round(Generator g, int b) {
  long c0 = os.getProcessCpuTime();
  double seconds = 0; long tokens = 0;
  for (int i = 0; i < 8; i += b) {
    g.generate(prompts.subList(i, i + b), cfg, null);
    var st = g.lastStats();
    seconds += st.decodeSeconds(); tokens += st.generatedTokens() - st.sequences();
  }
  return new double[] {tokens / seconds, (os.getProcessCpuTime() - c0) / 1e3 / (8.0 * newTokens)};
}
for (int i = 0; i < 2; i++) { round(g1, 1); round(g8, 8); } // warm-up: JIT and caches
double[] one = new double[reps], eight = new double[reps], ratio = new double[reps];
for (int rep = 1; rep <= reps; rep++) {
  double[] a = round(g1, 1), b = round(g8, 8);
  System.out.printf(Locale.ROOT, "repeat %d: batch 1 %.1f tok/s %.1f us cpu/token | batch 8 %.1f tok/s %.1f us cpu/token | b8/b1 wall %.2fx cpu %.2fx%n",
      rep, a[0], a[1], b[0], b[1], b[0] / a[0], a[1] / b[1]);
  one[rep - 1] = a[0]; eight[rep - 1] = b[0]; ratio[rep - 1] = b[0] / a[0];
}
// median (min..max) over the repeats
String spread(double[] v, String f) {
  double[] s = v.clone(); Arrays.sort(s);
  double mid = s.length % 2 == 1 ? s[s.length / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
  return String.format(Locale.ROOT, f + " (" + f + ".." + f + ")", mid, s[0], s[s.length - 1]);
}
System.out.printf(Locale.ROOT, "median over %d repeats: batch 1 %s tok/s, batch 8 %s tok/s, b8/b1 wall %s%n", reps, spread(one, "%.1f"), spread(eight, "%.1f"),
    spread(ratio, "%.2f"));
g1.close(); g8.close(); m.close();
/exit
