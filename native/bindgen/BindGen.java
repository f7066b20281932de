import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Generates Java bindings from one restricted C header (see native/include/eetune/eetune.h).
 *
 * Run with the JDK's source launcher (no jextract, no extra module):
 *   java BindGen.java interface HEADER PACKAGE NAME OUT_DIR
 *       writes the Java interface NAME (one method per C function, pointers as long addresses; the header's
 *       `#define EE_ABI_VERSION n`, if any, as the constant EE_ABI_VERSION)
 *   java BindGen.java providers HEADER IFACE PACKAGE PREFIX OUT17 OUT22
 *       writes PREFIXJna (JNA direct mapping, Java 17 root) and PREFIXFfm (FFM static MethodHandles, java22 root),
 *       both implementing the interface IFACE (fully qualified) for one native library.
 */
public final class BindGen {

    record Param(String cType, String name) {}

    record Function(String doc, String ret, String name, List<Param> params) {}

    private static final Pattern DECL = Pattern.compile("^EE_API\\s+(.+?)\\s*\\b(\\w+)\\s*\\((.*)\\);\\s*$");
    private static final Pattern ABI_VERSION = Pattern.compile("^#define\\s+EE_ABI_VERSION\\s+(\\d+)\\s*$", Pattern.MULTILINE);

    public static void main(String[] args) throws IOException {
        if (args.length < 1) usage();
        switch (args[0]) {
            case "interface" -> {
                if (args.length != 5) usage();
                List<Function> fns = parse(Path.of(args[1]));
                write(Path.of(args[4]), args[2], args[3], iface(args[2], args[3], fns, Path.of(args[1])));
            }
            case "providers" -> {
                if (args.length != 7) usage();
                List<Function> fns = parse(Path.of(args[1]));
                String iface = args[2], pkg = args[3], prefix = args[4];
                write(Path.of(args[5]), pkg, prefix + "Jna", jna(iface, pkg, prefix + "Jna", fns));
                write(Path.of(args[6]), pkg, prefix + "Ffm", ffm(iface, pkg, prefix + "Ffm", fns));
            }
            default -> usage();
        }
    }

    private static void usage() {
        System.err.println("usage: BindGen interface HEADER PACKAGE NAME OUT | providers HEADER IFACE PACKAGE PREFIX OUT17 OUT22");
        System.exit(2);
    }

    static List<Function> parse(Path header) throws IOException {
        List<Function> out = new ArrayList<>();
        StringBuilder doc = new StringBuilder();
        boolean inDoc = false;
        int lineNo = 0;
        for (String raw : Files.readAllLines(header)) {
            lineNo++;
            String line = raw.strip();
            if (line.startsWith("/**")) {
                inDoc = true;
                doc.setLength(0);
            }
            if (inDoc) {
                String text = line.replaceFirst("^/\\*\\*", "").replaceFirst("\\*/$", "").replaceFirst("^\\*", "").strip();
                if (!text.isEmpty()) doc.append(doc.length() > 0 ? "\n" : "").append(text);
                if (line.endsWith("*/")) inDoc = false;
                continue;
            }
            if (!line.startsWith("EE_API ")) {
                if (!line.isEmpty() && !line.startsWith("#") && !line.startsWith("/*") && !line.startsWith("*")) doc.setLength(0);
                continue;
            }
            Matcher m = DECL.matcher(line);
            if (!m.matches()) throw new IllegalArgumentException(header + ":" + lineNo + ": not a one-line EE_API declaration: " + line);
            List<Param> params = new ArrayList<>();
            String plist = m.group(3).strip();
            if (!plist.equals("void") && !plist.isEmpty()) {
                for (String p : plist.split(",")) {
                    Matcher pm = Pattern.compile("^(.+?)\\s*\\b(\\w+)$").matcher(p.strip());
                    if (!pm.matches()) throw new IllegalArgumentException(header + ":" + lineNo + ": bad parameter '" + p + "'");
                    String type = pm.group(1).strip();
                    javaType(type, header, lineNo);
                    params.add(new Param(type, pm.group(2)));
                }
            }
            javaType(m.group(1).strip(), header, lineNo);
            out.add(new Function(doc.toString(), m.group(1).strip(), m.group(2), params));
            doc.setLength(0);
        }
        if (out.isEmpty()) throw new IllegalArgumentException(header + ": no EE_API declarations found");
        return out;
    }

    /** C type to Java type: pointers are 64-bit addresses. */
    static String javaType(String c, Path header, int line) {
        String t = c.replace("const", "").strip();
        if (t.endsWith("*")) return "long";
        return switch (t) {
            case "void" -> "void";
            case "int32_t", "int" -> "int";
            case "int64_t" -> "long";
            case "float" -> "float";
            case "double" -> "double";
            default -> throw new IllegalArgumentException(header + ":" + line + ": unsupported C type '" + c + "'");
        };
    }

    static String jt(String c) { return javaType(c, Path.of("?"), 0); }

    static boolean isPointer(String c) { return c.strip().endsWith("*"); }

    static String paramList(Function f) {
        StringBuilder sb = new StringBuilder();
        for (Param p : f.params()) sb.append(sb.length() > 0 ? ", " : "").append(jt(p.cType())).append(' ').append(p.name());
        return sb.toString();
    }

    static String argList(Function f) {
        StringBuilder sb = new StringBuilder();
        for (Param p : f.params()) sb.append(sb.length() > 0 ? ", " : "").append(p.name());
        return sb.toString();
    }

    static String header(String pkg, Path from) {
        return "// GENERATED by native/bindgen/BindGen.java from " + from.getFileName() + " -- do not edit.\npackage " + pkg + ";\n\n";
    }

    static String iface(String pkg, String name, List<Function> fns, Path from) throws IOException {
        StringBuilder sb = new StringBuilder(header(pkg, from));
        sb.append("/** The native ABI declared in ").append(from.getFileName())
          .append(": one method per C function; pointers are 64-bit addresses. */\n");
        sb.append("public interface ").append(name).append(" {\n");
        Matcher abi = ABI_VERSION.matcher(Files.readString(from));
        if (abi.find()) {
            sb.append("\n    /** EE_ABI_VERSION of ").append(from.getFileName())
              .append(": the ABI this code was generated for; loaders refuse a library reporting another. */\n");
            sb.append("    int EE_ABI_VERSION = ").append(abi.group(1)).append(";\n");
        }
        for (Function f : fns) {
            sb.append("\n    /**\n");
            // the header's comments are plain text: escaped so that javadoc reads "<", ">" and "&" as characters
            for (String l : f.doc().split("\n"))
                sb.append("     * ").append(l.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("*/", "* /")).append('\n');
            sb.append("     */\n");
            sb.append("    ").append(jt(f.ret())).append(' ').append(f.name()).append('(').append(paramList(f)).append(");\n");
        }
        return sb.append("}\n").toString();
    }

    static String jna(String iface, String pkg, String cls, List<Function> fns) {
        StringBuilder sb = new StringBuilder();
        sb.append("// GENERATED by native/bindgen/BindGen.java -- do not edit.\npackage ").append(pkg).append(";\n\n");
        sb.append("/** JNA direct-mapping provider of {@link ").append(iface).append("} for one native library. */\n");
        sb.append("public final class ").append(cls).append(" implements ").append(iface).append(" {\n");
        sb.append("    private static volatile ").append(cls).append(" instance;\n\n");
        sb.append("    private ").append(cls).append("() {}\n\n");
        sb.append("    /** Binds the natives to the library (once per JVM: JNA registers a class with one library). */\n");
        sb.append("    public static synchronized ").append(iface).append(" bind(com.sun.jna.NativeLibrary library) {\n");
        sb.append("        if (instance == null) {\n");
        sb.append("            com.sun.jna.Native.register(Natives.class, library);\n");
        sb.append("            instance = new ").append(cls).append("();\n");
        sb.append("        }\n        return instance;\n    }\n\n");
        sb.append("    /** Static natives named exactly as the C functions, as JNA direct mapping requires. */\n");
        sb.append("    private static final class Natives {\n");
        for (Function f : fns) {
            sb.append("        static native ").append(jt(f.ret())).append(' ').append(f.name()).append('(').append(paramList(f)).append(");\n");
        }
        sb.append("    }\n");
        for (Function f : fns) {
            sb.append("\n    @Override\n    public ").append(jt(f.ret())).append(' ').append(f.name()).append('(').append(paramList(f)).append(") {\n");
            sb.append("        ").append(jt(f.ret()).equals("void") ? "" : "return ").append("Natives.").append(f.name())
              .append('(').append(argList(f)).append(");\n    }\n");
        }
        return sb.append("}\n").toString();
    }

    static String layout(String c) {
        if (isPointer(c)) return "ValueLayout.ADDRESS";
        return switch (jt(c)) {
            case "int" -> "ValueLayout.JAVA_INT";
            case "long" -> "ValueLayout.JAVA_LONG";
            case "float" -> "ValueLayout.JAVA_FLOAT";
            case "double" -> "ValueLayout.JAVA_DOUBLE";
            default -> throw new IllegalStateException(c);
        };
    }

    /**
     * A parameter's layout: pointers go as JAVA_LONG. Every 64-bit C ABI the FFM linker supports (x86-64 System V and
     * Windows, AArch64, RISC-V 64, ppc64, s390x) passes a pointer exactly as a 64-bit integer, and a long argument
     * needs no MemorySegment per call: the downcall stays cheap before C2 has compiled the caller (the interpreter
     * and C1 do not scalar-replace those segments), which is most of a short CLI run.
     */
    static String paramLayout(String c) { return isPointer(c) ? "ValueLayout.JAVA_LONG" : layout(c); }

    static String ffm(String iface, String pkg, String cls, List<Function> fns) {
        StringBuilder sb = new StringBuilder("// GENERATED by native/bindgen/BindGen.java -- do not edit.\npackage " + pkg + ";\n\n");
        sb.append("import java.lang.foreign.FunctionDescriptor;\nimport java.lang.foreign.Linker;\nimport java.lang.foreign.MemorySegment;\n");
        sb.append("import java.lang.foreign.SymbolLookup;\nimport java.lang.foreign.ValueLayout;\nimport java.lang.invoke.MethodHandle;\n\n");
        sb.append("/** Panama FFM provider of {@link ").append(iface).append("}: static final method handles, invokeExact. */\n");
        sb.append("public final class ").append(cls).append(" implements ").append(iface).append(" {\n");
        sb.append("    private static volatile MemorySegment[] symbols; // NAMES' addresses\n    private static volatile ").append(cls).append(" instance;\n\n");
        sb.append("    private ").append(cls).append("() {}\n\n");
        // Each handle is made when its function is first called (its holder class initialises): a downcall handle
        // spins classes, and a process uses a few of the functions (`ee generate` on stories260K: 12 of 45). bind()
        // looks every symbol up, so a library missing one fails there, not mid-run.
        sb.append("    /** Binds to the library's symbols (once per JVM, all looked up here); each handle is made on its first call. */\n");
        sb.append("    public static synchronized ").append(iface).append(" bind(SymbolLookup lookup) {\n");
        sb.append("        if (instance == null) {\n");
        sb.append("            MemorySegment[] found = new MemorySegment[NAMES.length];\n");
        sb.append("            for (int i = 0; i < NAMES.length; i++) {\n                String name = NAMES[i];\n");
        sb.append("                found[i] = lookup.find(name).orElseThrow(() -> new UnsatisfiedLinkError(\"native symbol not found: \" + name));\n            }\n");
        sb.append("            symbols = found;\n            instance = new ").append(cls).append("();\n        }\n");
        sb.append("        return instance;\n    }\n\n");
        sb.append("    private static final String[] NAMES = {");
        for (int i = 0; i < fns.size(); i++) sb.append(i > 0 ? ", " : "").append('"').append(fns.get(i).name()).append('"');
        sb.append("};\n\n");
        sb.append("    private static MethodHandle downcall(int symbol, FunctionDescriptor fd) {\n");
        sb.append("        return Linker.nativeLinker().downcallHandle(symbols[symbol], fd);\n    }\n");
        for (Function f : fns) {
            StringBuilder fd = new StringBuilder();
            boolean isVoid = jt(f.ret()).equals("void");
            fd.append(isVoid ? "FunctionDescriptor.ofVoid(" : "FunctionDescriptor.of(" + layout(f.ret()) + (f.params().isEmpty() ? "" : ", "));
            for (int i = 0; i < f.params().size(); i++) fd.append(i > 0 ? ", " : "").append(paramLayout(f.params().get(i).cType()));
            fd.append(')');
            sb.append("\n    private static final class ").append(f.name()).append(" {\n        static final MethodHandle H = downcall(").append(fns.indexOf(f)).append(", ").append(fd).append(");\n    }\n");
        }
        for (Function f : fns) {
            String rt = jt(f.ret());
            sb.append("\n    @Override\n    public ").append(rt).append(' ').append(f.name()).append('(').append(paramList(f)).append(") {\n");
            StringBuilder call = new StringBuilder();
            for (Param p : f.params()) {
                call.append(call.length() > 0 ? ", " : "").append(p.name());
            }
            sb.append("        try {\n            ");
            if (isPointer(f.ret())) sb.append("return ((MemorySegment) ").append(f.name()).append(".H.invokeExact(").append(call).append(")).address();\n");
            else if (rt.equals("void")) sb.append(f.name()).append(".H.invokeExact(").append(call).append(");\n");
            else sb.append("return (").append(rt).append(") ").append(f.name()).append(".H.invokeExact(").append(call).append(");\n");
            sb.append("        } catch (RuntimeException | Error e) {\n            throw e;\n        } catch (Throwable t) {\n            throw new IllegalStateException(t);\n        }\n    }\n");
        }
        return sb.append("}\n").toString();
    }

    static void write(Path dir, String pkg, String cls, String text) throws IOException {
        Path file = dir.resolve(pkg.replace('.', '/')).resolve(cls + ".java");
        Files.createDirectories(file.getParent());
        if (Files.exists(file) && Files.readString(file).equals(text)) return; // keep timestamps: no needless recompiles
        Files.writeString(file, text);
    }
}
