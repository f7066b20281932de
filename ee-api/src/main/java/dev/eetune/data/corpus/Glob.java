package dev.eetune.data.corpus;

import java.util.regex.Pattern;
import java.util.regex.PatternSyntaxException;

/**
 * A file-name pattern over '/'-separated relative paths, the same for directory files and zip entries (the default
 * file system's glob would use the platform separator, and zip entry names are not paths of it).
 *
 * <p>{@code *} matches within one path element, {@code **} across elements, {@code ?} one character, {@code {a,b}}
 * either alternative. As in .gitignore, a pattern without '/' matches the file name at any depth ({@code *.java}),
 * and a leading {@code **}{@code /} also matches at the top level ({@code **}{@code /*.java} matches {@code A.java}).
 */
final class Glob {
    private final String glob;
    private final Pattern pattern;
    private final boolean nameOnly;

    private Glob(String glob, Pattern pattern, boolean nameOnly) {
        this.glob = glob;
        this.pattern = pattern;
        this.nameOnly = nameOnly;
    }

    static Glob of(String glob) {
        if (glob.isBlank()) throw new IllegalArgumentException("empty glob");
        String body = glob.startsWith("**/") ? glob.substring(3) : glob;
        boolean nameOnly = !body.contains("/");
        try {
            return new Glob(glob, Pattern.compile(toRegex(nameOnly ? body : glob, glob)), nameOnly);
        } catch (PatternSyntaxException e) {
            throw new IllegalArgumentException("invalid glob '" + glob + "': " + e.getDescription(), e);
        }
    }

    /** Whether {@code relativePath} ('/'-separated, no leading '/') matches. */
    boolean matches(String relativePath) {
        String subject = nameOnly ? relativePath.substring(relativePath.lastIndexOf('/') + 1) : relativePath;
        return pattern.matcher(subject).matches();
    }

    private static String toRegex(String glob, String original) {
        StringBuilder re = new StringBuilder();
        int braces = 0;
        for (int i = 0; i < glob.length(); i++) {
            char c = glob.charAt(i);
            switch (c) {
                case '*' -> {
                    boolean twin = i + 1 < glob.length() && glob.charAt(i + 1) == '*';
                    if (!twin) {
                        re.append("[^/]*");
                    } else if (i + 2 < glob.length() && glob.charAt(i + 2) == '/') {
                        re.append("(?:.*/)?"); // "a/**/b" also matches "a/b"
                        i += 2;
                    } else {
                        re.append(".*");
                        i++;
                    }
                }
                case '?' -> re.append("[^/]");
                case '{' -> {
                    braces++;
                    re.append("(?:");
                }
                case '}' -> {
                    if (braces-- == 0) throw new IllegalArgumentException("invalid glob '" + original + "': unmatched '}'");
                    re.append(')');
                }
                case ',' -> re.append(braces > 0 ? "|" : ",");
                default -> re.append(Pattern.quote(String.valueOf(c)));
            }
        }
        if (braces != 0) throw new IllegalArgumentException("invalid glob '" + original + "': unmatched '{'");
        return re.toString();
    }

    @Override
    public String toString() { return glob; }
}
