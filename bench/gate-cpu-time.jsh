// CPU time per decoded token of one thread at batch 1 (load-independent, unlike wall time) for the full model and
// for gate and softmax decisions, scored but never exiting and at calibrated thresholds (docs/exit-gates.md,
// "Where the speed-up is lost"). Run by bench/gates.sh cpu; -R-D properties: model, heads (folder with
// heads.safetensors and thresholds.json), tokenizer, softmax (the softmax thresholds, "1=0.6,2=0.58"; optional),
// calibrated (more thresholds files `ee calibrate` wrote for the same heads, "name=path,name=path"; optional: e.g. the
// cascade's and saturation's), repeats, tokens, prompts ("|"-separated).
import dev.eetune.backend.*;
import dev.eetune.exit.*;
import dev.eetune.model.*;
import dev.eetune.infer.*;
import dev.eetune.eval.*;
import dev.eetune.tokenizer.*;
import java.nio.file.*;
import java.util.*;
import java.lang.management.*;

Backend be = Backends.cpu();
be.setThreads(Integer.getInteger("threads", 1));
LlamaModel m = LlamaModel.load(Path.of(System.getProperty("model")), be);
Path headsDir = Path.of(System.getProperty("heads"));
EarlyExitModel ee = EarlyExitModel.load(m, headsDir.resolve("heads.safetensors"));
Tokenizer tok = Tokenizer.load(Path.of(System.getProperty("tokenizer")));
String[] ps = System.getProperty("prompts", "Once upon a time|The little dog|Tom and Lily went|One day, a girl|The sun was|Sam had a red ball|In the park|Mom said").split("[|]");
List<int[]> prompts = new ArrayList<>();
for (String p : ps) prompts.add(tok.encode(p));
int newTokens = Integer.getInteger("tokens", 128);
EarlyExitPolicy calPolicy = ThresholdCalibration.load(headsDir.resolve("thresholds.json"));
Map<Integer, Float> never = new TreeMap<>();
for (int l : calPolicy.thresholds().keySet()) never.put(l, 0.999999f);
LinkedHashMap<String, EarlyExitPolicy> policies = new LinkedHashMap<>();
policies.put("full", null);
policies.put("gate scored, never exits", new EarlyExitPolicy(never, false, ConfidenceMethod.GATE));
policies.put(calPolicy.confidence().label() + " calibrated", calPolicy);
for (String kv : System.getProperty("calibrated", "").split(",")) {
  if (kv.isBlank()) continue;
  String[] a = kv.split("=", 2); policies.put(a[0] + " calibrated", ThresholdCalibration.load(Path.of(a[1])));
}
policies.put("softmax scored, never exits", new EarlyExitPolicy(never, false, ConfidenceMethod.SOFTMAX));
if (System.getProperty("softmax", "").contains("=")) {
  Map<Integer, Float> calSoft = new TreeMap<>();
  for (String kv : System.getProperty("softmax").split(",")) { String[] a = kv.split("="); calSoft.put(Integer.parseInt(a[0]), Float.parseFloat(a[1])); }
  policies.put("softmax calibrated", new EarlyExitPolicy(calSoft, false, ConfidenceMethod.SOFTMAX));
}
ThreadMXBean tmx = ManagementFactory.getThreadMXBean();
GenerationConfig cfg = GenerationConfig.greedy(newTokens, Set.of());
int maxLen = prompts.stream().mapToInt(p -> p.length).max().orElse(1) + newTokens;
Map<String, List<Double>> cpu = new LinkedHashMap<>(), wall = new LinkedHashMap<>();
Map<String, String> stats = new LinkedHashMap<>();
Map<String, EarlyExitGenerator> gens = new LinkedHashMap<>();
for (var e : policies.entrySet()) gens.put(e.getKey(), e.getValue() == null ? new EarlyExitGenerator(m, null, EarlyExitPolicy.none(), 1, maxLen) : new EarlyExitGenerator(m, ee, e.getValue(), 1, maxLen));
int reps = Integer.getInteger("repeats", 5);
for (int rep = -1; rep < reps; rep++) {
  for (var e : gens.entrySet()) {
    long c0 = tmx.getCurrentThreadCpuTime(), w0 = System.nanoTime(); long toks = 0; double layers = 0; long[] ex = null;
    for (int[] p : prompts) { var r = e.getValue().generate(List.of(p), cfg, null); toks += r.get(0).tokens().length - p.length;
      var st = e.getValue().lastStats(); layers += st.layersPerToken(); long[] c = st.exitCounts(); if (ex == null) ex = new long[c.length]; for (int i = 0; i < c.length; i++) ex[i] += c[i]; }
    double c = (tmx.getCurrentThreadCpuTime() - c0) / 1e3 / toks, w = (System.nanoTime() - w0) / 1e3 / toks;
    if (rep >= 0) { cpu.computeIfAbsent(e.getKey(), k -> new ArrayList<>()).add(c); wall.computeIfAbsent(e.getKey(), k -> new ArrayList<>()).add(w); }
    stats.put(e.getKey(), String.format("layers/token %.3f exits %s", layers / prompts.size(), Arrays.toString(ex)));
  }
}
double med(List<Double> l) { List<Double> s = new ArrayList<>(l); Collections.sort(s); return s.get(s.size() / 2); }
double fullCpu = med(cpu.get("full")), fullWall = med(wall.get("full"));
System.out.printf("%-28s %14s %14s %9s %9s  %s%n", "policy (batch 1, 1 thread)", "cpu us/token", "wall us/token", "cpu x", "wall x", "layers/token incl. heads+scores; tokens per exit layer");
for (String k : gens.keySet()) {
  List<Double> c = cpu.get(k), w = wall.get(k);
  System.out.printf("%-28s %7.1f [%.0f-%.0f] %7.1f [%.0f-%.0f] %8.3fx %8.3fx  %s%n", k, med(c), Collections.min(c), Collections.max(c), med(w), Collections.min(w), Collections.max(w), fullCpu / med(c), fullWall / med(w), stats.get(k));
}
/exit
