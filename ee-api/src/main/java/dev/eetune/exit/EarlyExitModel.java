package dev.eetune.exit;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.eetune.model.KvCache;
import dev.eetune.model.LlamaConfig;
import dev.eetune.model.LlamaModel;
import dev.eetune.model.Workspace;
import dev.eetune.model.io.JsonFields;
import dev.eetune.model.io.SafetensorsHeader;
import dev.eetune.model.io.TensorEntry;
import dev.eetune.nn.Parameter;
import dev.eetune.nn.ParameterSet;
import dev.eetune.nn.TensorFiles;
import dev.eetune.tensor.DType;
import dev.eetune.tensor.Scope;
import dev.eetune.tensor.Tensor;

import java.io.IOException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeSet;

/**
 * A frozen backbone with early-exit heads. The heads (only) are saved as safetensors with a JSON metadata block
 * naming the backbone shape, exit layers, architectures, init, temperature and dtype, so a tuned set can be shared
 * and re-attached to the same backbone.
 *
 * <p>Thread-safety: like the backbone, read-only while decoding, shared by any number of threads (each with its own
 * decoder); decoders hold a {@link #use() lease} per call, so closing the heads waits for running calls. Tuning writes
 * the heads' parameters: while a {@link dev.eetune.train.Tuner} runs, no other thread uses these heads.
 */
public final class EarlyExitModel implements AutoCloseable {
    static final String METADATA_KEY = "eetune";
    static final String FORMAT = "eetune-exit-heads";
    static final int VERSION = 1;
    private static final ObjectMapper JSON = new ObjectMapper();

    private final LlamaModel backbone;
    private final List<ExitHead> heads;
    private final ExitHead[] byLayer; // index = exit layer (1-based)
    private final ParameterSet params;
    private final ExitGate[] gates; // index = exit layer; null where the exit has no gate
    private ParameterSet gateParams; // made by the first gate: tuning (Tuner) never sees the gates' parameters

    private EarlyExitModel(LlamaModel backbone, List<ExitHead> heads, ParameterSet params) {
        this.backbone = backbone;
        this.heads = List.copyOf(heads);
        this.byLayer = new ExitHead[backbone.config().nLayers() + 1];
        for (ExitHead h : heads) byLayer[h.layer()] = h;
        this.params = params;
        this.gates = new ExitGate[byLayer.length];
    }

    /** The backbone with no heads: {@link #run} is then the plain layer loop. */
    public static EarlyExitModel withoutExits(LlamaModel backbone) { return attach(backbone, List.of(), 0); }

    /** Attaches new heads (sorted by layer; one per layer) to {@code backbone}; the backbone is not owned. */
    public static EarlyExitModel attach(LlamaModel backbone, List<ExitSpec> specs, long seed) {
        return attach(backbone, specs, seed, 1f);
    }

    public static EarlyExitModel attach(LlamaModel backbone, List<ExitSpec> specs, long seed, float temperature) {
        List<ExitSpec> sorted = new ArrayList<>(specs);
        sorted.sort(Comparator.comparingInt(ExitSpec::layer));
        for (int i = 1; i < sorted.size(); i++) {
            if (sorted.get(i).layer() == sorted.get(i - 1).layer()) throw new IllegalArgumentException("two exits after layer " + sorted.get(i).layer());
        }
        ParameterSet ps = new ParameterSet(backbone.backend(), "exit heads");
        try {
            Random r = new Random(seed);
            List<ExitHead> heads = new ArrayList<>();
            for (ExitSpec s : sorted) heads.add(ExitHead.create(s, backbone, ps, r, temperature));
            return new EarlyExitModel(backbone, heads, ps);
        } catch (RuntimeException e) {
            ps.close();
            throw e;
        }
    }

    public LlamaModel backbone() { return backbone; }

    /** Heads in layer order. */
    public List<ExitHead> heads() { return heads; }

    public ParameterSet parameterSet() { return params; }

    public List<Parameter> parameters() { return params.parameters(); }

    /** The deepest exit layer (1-based), 0 without heads. */
    public int lastExitLayer() { return heads.isEmpty() ? 0 : heads.get(heads.size() - 1).layer(); }

    /** The gate at the exit after layer L, or null (heads need no gate; only the {@code gate} confidence method uses one). */
    public ExitGate gate(int layer) { return layer >= 1 && layer < gates.length ? gates[layer] : null; }

    /** Whether every head has a gate. */
    public boolean hasGates() { return !heads.isEmpty() && heads.stream().allMatch(h -> gates[h.layer()] != null); }

    /**
     * Gives every head a fresh (untrained) gate with {@code hiddenUnits} hidden units (0: linear; see {@link ExitGate}),
     * replacing any it had; for {@link dev.eetune.train.GateTrainer}, before these heads are shared with decoding threads.
     */
    public void attachGates(int hiddenUnits, long seed) {
        LlamaConfig c = backbone.config();
        if (gateParams != null) gateParams.close(); // all gates are made together, of one kind
        gateParams = new ParameterSet(backbone.backend(), "exit gates");
        Tensor unit = gateParams.scope().of(ones(c.dim()), c.dim());
        for (ExitHead h : heads) gates[h.layer()] = ExitGate.create(h.layer(), c, gateParams, unit, hiddenUnits, seed);
    }

    private static float[] ones(int n) {
        float[] a = new float[n];
        java.util.Arrays.fill(a, 1f);
        return a;
    }

    /** The head after layer L, or null. */
    public ExitHead head(int layer) { return layer >= 1 && layer < byLayer.length ? byLayer[layer] : null; }

    /**
     * The one layer loop with exit taps: runs backbone layers from+1 .. to (1-based) over the pass, the residual
     * stream updated in place and K/V written to {@code cache} (null: dense rows, no cache). Before each layer the
     * visitor may change the pass; after layer L, when a head sits there and the visitor visits it, the visitor gets
     * the head's input (with the layer's attention residual when the head reads it) and returns the pass to go on
     * with, or null to stop. Returns the last layer run.
     */
    public int run(Pass pass, KvCache cache, int from, int to, Workspace ws, ExitVisitor visitor) {
        int n = backbone.config().nLayers();
        if (from < 0 || to > n || from > to) throw new IllegalArgumentException("layers " + (from + 1) + ".." + to + " outside 1.." + n);
        for (int layer = from + 1; layer <= to; ) {
            pass = visitor.beforeLayer(layer, pass);
            // the layers up to the next visited head, or to where the visitor may change the pass, in one call
            int last = layer;
            while (last < to && !visited(byLayer[last], visitor) && visitor.passesThrough(last + 1)) {
                if (visitor.beforeLayer(++last, pass) != pass) throw new IllegalStateException("the visitor changed the pass before layer " + last + ", which it said passes through");
            }
            ExitHead h = byLayer[last];
            boolean visit = visited(h, visitor);
            Tensor residual = visit && h.readsAttentionResidual() ? ws.residual(pass.rowCount()) : null;
            backbone.layers(pass.x(), pass.rows(), cache, layer - 1, last, ws, residual);
            if (visit) {
                pass = visitor.atExit(h, new ExitInput(pass.x(), residual, pass.rows(), visitor.ownCache(h), ws), pass);
                if (pass == null) return last;
            }
            layer = last + 1;
        }
        return to;
    }

    private static boolean visited(ExitHead h, ExitVisitor visitor) { return h != null && visitor.visits(h); }

    /** Writes the heads' parameters (as {@code dtype}) and metadata to one safetensors file, atomically. */
    public void save(Path file, DType dtype) {
        TensorFiles.write(file, valuesByName(), dtype, Map.of(METADATA_KEY, metadata(dtype).toString(), "format", "pt"));
    }

    /** Parameter values by name, in parameter order: the heads', then the gates'. */
    public Map<String, Tensor> valuesByName() {
        Map<String, Tensor> m = new LinkedHashMap<>();
        for (Parameter p : params.parameters()) m.put(p.name(), p.value());
        if (gateParams != null) for (Parameter p : gateParams.parameters()) m.put(p.name(), p.value());
        return m;
    }

    private ObjectNode metadata(DType dtype) {
        LlamaConfig c = backbone.config();
        ObjectNode m = JSON.createObjectNode();
        m.put("format", FORMAT).put("version", VERSION).put("dtype", dtype.name());
        m.putObject("backbone").put("architecture", c.architecture()).put("dim", c.dim()).put("layers", c.nLayers())
            .put("heads", c.nHeads()).put("kv_heads", c.nKvHeads()).put("hidden", c.hiddenDim()).put("vocab", c.vocabSize());
        ArrayNode exits = m.putArray("exits");
        for (ExitHead h : heads) {
            exits.addObject().put("layer", h.layer()).put("architecture", h.architecture().label()).put("init", h.spec().init().label())
                .put("temperature", h.temperature());
            ExitGate g = gates[h.layer()];
            if (g != null) ((ObjectNode) exits.get(exits.size() - 1)).put("gate", g.kind()).put("gate_hidden", g.hiddenUnits());
        }
        return m;
    }

    /**
     * Re-attaches heads saved by {@link #save} to {@code backbone}. Everything in the file is checked first: the
     * metadata (format, version, dtype, the backbone's shape, each exit's layer, architecture, init and temperature),
     * that the tensors are exactly those of the listed exits, in the metadata's dtype, and that every value is finite.
     */
    public static EarlyExitModel load(LlamaModel backbone, Path file) {
        SafetensorsHeader header = SafetensorsHeader.read(file);
        String meta = header.metadata().get(METADATA_KEY);
        if (meta == null) throw new IllegalArgumentException(file + ": no '" + METADATA_KEY + "' metadata: not an eetune exit-head file");
        JsonNode m;
        try {
            m = JSON.readTree(meta);
        } catch (IOException e) {
            throw new IllegalArgumentException(file + ": metadata '" + METADATA_KEY + "' is not valid JSON: " + e.getMessage(), e);
        }
        if (m == null || !m.isObject()) throw new IllegalArgumentException(file + ": metadata '" + METADATA_KEY + "' is not a JSON object");
        JsonFields f = new JsonFields(file + ": metadata '" + METADATA_KEY + "'", m);
        String format = f.requiredText("format");
        if (!format.equals(FORMAT)) throw new IllegalArgumentException(f.where() + ": format '" + format + "', expected '" + FORMAT + "'");
        int version = f.requiredInt("version");
        if (version != VERSION) throw new IllegalArgumentException(f.where() + ": version " + version + ", but this build reads version " + VERSION);
        DType dtype = storedDtype(f);

        LlamaConfig c = backbone.config();
        JsonFields b = f.requiredObject("backbone");
        String[] names = {"dim", "layers", "vocab", "hidden", "heads", "kv_heads"};
        int[] actual = {c.dim(), c.nLayers(), c.vocabSize(), c.hiddenDim(), c.nHeads(), c.nKvHeads()};
        for (int i = 0; i < names.length; i++) {
            int tuned = b.requiredInt(names[i]);
            if (tuned != actual[i]) {
                throw new IllegalArgumentException(file + ": these heads were tuned for a backbone with " + names[i] + " = " + tuned + ", this backbone has " + actual[i]);
            }
        }

        JsonNode exits = f.requiredArray("exits");
        if (exits.isEmpty()) throw new IllegalArgumentException(f.where() + ": lists no exits");
        List<ExitSpec> specs = new ArrayList<>();
        Set<Integer> layers = new TreeSet<>();
        float temperature = Float.NaN;
        boolean withGates = false;
        int gateHidden = 0;
        for (int i = 0; i < exits.size(); i++) {
            if (!exits.get(i).isObject()) throw new IllegalArgumentException(f.where() + ": exits[" + i + "] must be an object, got " + exits.get(i));
            JsonFields e = new JsonFields(f.where() + ": exits[" + i + "]", exits.get(i));
            int layer = e.requiredInt("layer");
            if (layer < 1 || layer > c.nLayers()) throw new IllegalArgumentException(e.where() + ": layer " + layer + " is outside this backbone's layers 1.." + c.nLayers());
            float t = e.requiredFloat("temperature");
            if (!(t > 0) || Float.isInfinite(t)) throw new IllegalArgumentException(e.where() + ": temperature must be positive and finite, got " + t);
            // one temperature applies to every head of a set (it is chosen once, when tuning)
            if (i > 0 && t != temperature) throw new IllegalArgumentException(e.where() + ": temperature " + t + " differs from the other exits' " + temperature);
            temperature = t;
            if (!layers.add(layer)) throw new IllegalArgumentException(e.where() + ": a second exit after layer " + layer);
            // gates are optional, but all or none: they are trained together (GateTrainer)
            JsonNode gate = exits.get(i).get("gate");
            boolean linear = gate != null && gate.isTextual() && gate.asText().equals(ExitGate.LINEAR), mlp = gate != null && gate.isTextual() && gate.asText().equals(ExitGate.MLP);
            if (gate != null && !linear && !mlp) {
                throw new IllegalArgumentException(e.where() + ": gate " + gate + ", expected \"" + ExitGate.LINEAR + "\", \"" + ExitGate.MLP + "\" or no gate");
            }
            int hidden = 0;
            if (mlp) {
                hidden = e.requiredInt("gate_hidden");
                if (hidden < 1) throw new IllegalArgumentException(e.where() + ": gate_hidden must be >= 1 for an " + ExitGate.MLP + " gate, got " + hidden);
            }
            if (i > 0 && ((gate != null) != withGates || hidden != gateHidden)) throw new IllegalArgumentException(e.where() + ": the exits' gates differ (all exits have one gate kind, or none)");
            withGates = gate != null;
            gateHidden = hidden;
            String arch = e.requiredText("architecture"), init = e.requiredText("init");
            try {
                specs.add(new ExitSpec(layer, ExitArchitecture.parse(arch), ExitInit.parse(init)));
            } catch (IllegalArgumentException x) {
                throw new IllegalArgumentException(e.where() + ": " + x.getMessage(), x);
            }
        }
        EarlyExitModel model = attach(backbone, specs, 0, temperature); // the initial values are then overwritten
        try {
            if (withGates) model.attachGates(gateHidden, 0);
            checkTensors(file, header, dtype, model.valuesByName().keySet());
            TensorFiles.readInto(file, model.valuesByName());
            return model;
        } catch (RuntimeException e) {
            model.close();
            throw e;
        }
    }

    private static DType storedDtype(JsonFields f) {
        String name = f.requiredText("dtype");
        DType dtype;
        try {
            dtype = DType.parse(name);
        } catch (IllegalArgumentException e) {
            dtype = null;
        }
        if (dtype == null || !dtype.isFloat()) throw new IllegalArgumentException(f.where() + ": dtype '" + name + "' is not a float type (F32, BF16 or F16)");
        return dtype;
    }

    /** The file's tensors must be exactly the heads' parameters (missing or extra ones are named), stored as {@code dtype}. */
    private static void checkTensors(Path file, SafetensorsHeader header, DType dtype, Set<String> expected) {
        Set<String> missing = new TreeSet<>(expected), extra = new TreeSet<>();
        for (TensorEntry t : header.tensors()) {
            if (!missing.remove(t.name())) extra.add(t.name());
            else if (t.dtype() != dtype) throw new IllegalArgumentException(file + ": tensor '" + t.name() + "' is stored as " + t.dtype() + ", but the metadata says " + dtype);
        }
        if (!missing.isEmpty()) throw new IllegalArgumentException(file + ": the exits the metadata lists need tensors the file lacks: " + missing);
        if (!extra.isEmpty()) throw new IllegalArgumentException(file + ": tensors that belong to no exit the metadata lists: " + extra);
    }

    /**
     * Keeps the backbone and these heads open for one call that runs on them (a decoder's generate, a tuning step):
     * closing either waits until the lease is closed. Fails if either is closed.
     */
    public Scope.Lease use() {
        Scope.Lease b = backbone.use();
        try {
            Scope.Lease h = params.scope().use();
            return () -> {
                h.close();
                b.close();
            };
        } catch (RuntimeException e) {
            b.close();
            throw e;
        }
    }

    /** Closes the heads (not the backbone), after the calls holding a {@link #use() lease} end. */
    @Override
    public void close() {
        params.close();
        if (gateParams != null) gateParams.close();
    }

    @Override
    public String toString() {
        return "EarlyExitModel[" + backbone + ", exits " + heads.stream().map(h -> h.spec().toString()).toList() + ", " + params.count() + " head parameters]";
    }
}
