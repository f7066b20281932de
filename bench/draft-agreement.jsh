// How often a cheap draft of the next token agrees with the full model's (docs/exit-gates.md, "A draft for the tokens
// that do not exit"): per layer L, over teacher-forced windows of a token file, the share of positions where the top
// token of (a) the model's own final norm and LM head on the hidden state after layer L (the "logit lens") and (b) the
// exit head after layer L, where there is one, equals the top token after the last layer.
// -R-D properties: model, heads (heads.safetensors), tokens (token file), windows (96), first (64: the first window read).
import dev.eetune.backend.*;
import dev.eetune.exit.*;
import dev.eetune.model.*;
import dev.eetune.tensor.*;
import dev.eetune.data.tokens.*;
import dev.eetune.data.batch.*;
import java.nio.file.*;
import java.util.*;

LlamaModel m = LlamaModel.load(Path.of(System.getProperty("model")), Backends.cpu());
EarlyExitModel ee = EarlyExitModel.load(m, Path.of(System.getProperty("heads")));
PackedSequences w = PackedSequences.of(TokenFile.open(Path.of(System.getProperty("tokens"))), 256, false);
int windows = Integer.getInteger("windows", 96), first = Integer.getInteger("first", 64);
LlamaConfig c = m.config();
Ops ops = m.backend().ops();
int layers = c.nLayers(), n = 256;
long[] lensAgree = new long[layers + 1], headAgree = new long[layers + 1];
long positions = 0;
int[] in = new int[n], targets = new int[n];
for (int wi = first; wi < first + windows; wi++) {
  w.read(wi, in, 0, targets, 0);
  int[][] lens = new int[layers + 1][], head = new int[layers + 1][];
  try (Scope s = Scope.of(m.backend()); Workspace ws = m.newWorkspace()) {
    // the top token of logits [n, vocab]
    java.util.function.Function<Tensor, int[]> top = logits -> {
      Tensor a = s.allocate(DType.I32, n), p = s.allocate(DType.F32, n);
      ops.argmax(a, p, logits, 1f);
      return a.toIntArray();
    };
    java.util.function.Function<Tensor, int[]> lensTop = x -> {
      Tensor logits = s.allocate(DType.F32, n, c.vocabSize());
      m.logits(logits, x, s.allocate(DType.F32, n, c.dim()));
      return top.apply(logits);
    };
    Workspace.Rows rows = ws.denseRows(in.clone(), 1, n);
    Tensor x = ws.x(n);
    m.embed(x, rows);
    ee.run(new Pass(x, rows), null, 0, layers, ws, new ExitVisitor() {
      public Pass beforeLayer(int layer, Pass pass) { // before layer `layer` (1-based) runs: the state after layer - 1
        if (layer > 1) lens[layer - 1] = lensTop.apply(pass.x());
        return pass;
      }
      public Pass atExit(ExitHead h, ExitInput input, Pass pass) {
        head[h.layer()] = top.apply(h.decodeLogits(s, input, n));
        return pass;
      }
    });
    int[] last = lensTop.apply(x);
    for (int r = 0; r < n; r++) {
      positions++;
      for (int l = 1; l < layers; l++) {
        if (lens[l] != null && lens[l][r] == last[r]) lensAgree[l]++;
        if (head[l] != null && head[l][r] == last[r]) headAgree[l]++;
      }
    }
  }
}
System.out.printf(Locale.ROOT, "%d positions (windows %d..%d)%n", positions, first, first + windows - 1);
for (int l = 1; l < layers; l++)
  System.out.printf(Locale.ROOT, "after layer %d: logit lens %.1f%%, exit head %s%n", l, 100.0 * lensAgree[l] / positions,
      ee.head(l) == null ? "none" : String.format(Locale.ROOT, "%.1f%%", 100.0 * headAgree[l] / positions));
/exit
