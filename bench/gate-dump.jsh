// Dumps, per exit and position of the first 128 windows of a token file, the exit hidden state, the state before the
// layer, the head's max probability and whether its top-1 equals the final layer's, and per position the final layer's
// max probability (fmp.f32), for bench/gate-features.py
// (docs/exit-gates.md, "Gate quality"). -R-D properties: model, heads (heads.safetensors), tokens (token file), out.
import dev.eetune.backend.*;
import dev.eetune.exit.*;
import dev.eetune.model.*;
import dev.eetune.tensor.*;
import dev.eetune.data.tokens.*;
import dev.eetune.data.batch.*;
import java.nio.file.*;
import java.io.*;
import java.nio.*;
import java.util.*;

String modelPath = System.getProperty("model"), headsPath = System.getProperty("heads"), tokPath = System.getProperty("tokens"), outDir = System.getProperty("out");
int windows = Integer.getInteger("windows", 128), seqLen = Integer.getInteger("seqlen", 256);
LlamaModel m = LlamaModel.load(Path.of(modelPath), Backends.cpu());
EarlyExitModel ee = EarlyExitModel.load(m, Path.of(headsPath));
TokenFile tf = TokenFile.open(Path.of(tokPath));
PackedSequences w = PackedSequences.of(tf, seqLen, false);
LlamaConfig c = m.config();
Ops ops = m.backend().ops();
List<ExitHead> heads = ee.heads();
int h = heads.size(), dim = c.dim(), n = seqLen;
DataOutputStream fmpo = new DataOutputStream(new BufferedOutputStream(new FileOutputStream(outDir + "/fmp.f32")));
DataOutputStream toko = new DataOutputStream(new BufferedOutputStream(new FileOutputStream(outDir + "/tok.i32")));
DataOutputStream[] hid = new DataOutputStream[h], prev = new DataOutputStream[h], mp = new DataOutputStream[h], ag = new DataOutputStream[h];
for (int i = 0; i < h; i++) {
  int L = heads.get(i).layer();
  hid[i] = new DataOutputStream(new BufferedOutputStream(new FileOutputStream(outDir + "/h" + L + ".f32")));
  prev[i] = new DataOutputStream(new BufferedOutputStream(new FileOutputStream(outDir + "/p" + L + ".f32")));
  mp[i] = new DataOutputStream(new BufferedOutputStream(new FileOutputStream(outDir + "/mp" + L + ".f32")));
  ag[i] = new DataOutputStream(new BufferedOutputStream(new FileOutputStream(outDir + "/ag" + L + ".u8")));
}
void wf(DataOutputStream o, float[] a) throws IOException { ByteBuffer b = ByteBuffer.allocate(a.length * 4).order(ByteOrder.LITTLE_ENDIAN); b.asFloatBuffer().put(a); o.write(b.array()); }
int[] in = new int[seqLen], tg = new int[seqLen];
for (int wi = 0; wi < windows; wi++) {
  w.read(wi, in, 0, tg, 0);
  int[][] am = new int[h][]; float[][] mps = new float[h][]; float[][] hs = new float[h][], ps = new float[h][];
  float[][] before = new float[1][];
  try (Scope s = Scope.of(m.backend()); Workspace ws = m.newWorkspace()) {
    Workspace.Rows rows = ws.denseRows(in.clone(), 1, n);
    Tensor x = ws.x(n);
    m.embed(x, rows);
    ee.run(new Pass(x, rows), null, 0, c.nLayers(), ws, new ExitVisitor() {
      public Pass beforeLayer(int layer, Pass pass) { if (ee.head(layer) != null) before[0] = pass.x().toFloatArray(); return pass; }
      public Pass atExit(ExitHead head, ExitInput ein, Pass pass) {
        int hi = heads.indexOf(head);
        Tensor logits = head.decodeLogits(s, ein, n), a = s.allocate(DType.I32, n), p = s.allocate(DType.F32, n);
        ops.argmax(a, p, logits, head.temperature());
        am[hi] = a.toIntArray(); mps[hi] = p.toFloatArray(); hs[hi] = ein.hidden().slice(0, n).toFloatArray(); ps[hi] = before[0];
        return pass;
      }
    });
    Tensor normed = s.allocate(DType.F32, n, dim), logits = s.allocate(DType.F32, n, c.vocabSize()), a = s.allocate(DType.I32, n);
    m.logits(logits, x, normed);
    Tensor fp = s.allocate(DType.F32, n);
    ops.argmax(a, fp, logits, 1f);
    int[] fin = a.toIntArray();
    wf(fmpo, fp.toFloatArray());
    { ByteBuffer b = ByteBuffer.allocate(n * 4).order(ByteOrder.LITTLE_ENDIAN); b.asIntBuffer().put(in); toko.write(b.array()); }
    for (int i = 0; i < h; i++) {
      wf(hid[i], hs[i]); wf(prev[i], ps[i]); wf(mp[i], mps[i]);
      byte[] y = new byte[n]; for (int r = 0; r < n; r++) y[r] = (byte) (am[i][r] == fin[r] ? 1 : 0); ag[i].write(y);
    }
  }
}
fmpo.close();
toko.close();
for (int i = 0; i < h; i++) { hid[i].close(); prev[i].close(); mp[i].close(); ag[i].close(); }
System.out.println("dumped " + windows + " windows");
/exit
