//! [`Language`]: separator presets for source code and markup, the same lists as LangChain's
//! `RecursiveCharacterTextSplitter.from_language`.

use std::fmt;
use std::str::FromStr;

use catena_core::Error;

/// A language whose syntax gives better split points than blank lines: function and class
/// starts for code, headings for markup. The separators are regular expressions, as in
/// LangChain (which compiles its presets with `is_separator_regex=True`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)] // the variants are the languages' names
pub enum Language {
    C,
    Cpp,
    CSharp,
    Cobol,
    Elixir,
    Go,
    Haskell,
    Html,
    Java,
    Js,
    Kotlin,
    Latex,
    Lua,
    Markdown,
    Php,
    PowerShell,
    Proto,
    Python,
    R,
    Rst,
    Ruby,
    Rust,
    Scala,
    Sol,
    Swift,
    Ts,
    VisualBasic6,
}

/// Every language, with the name LangChain's `Language` enum gives it.
const NAMES: [(Language, &str); 27] = [
    (Language::C, "c"),
    (Language::Cpp, "cpp"),
    (Language::CSharp, "csharp"),
    (Language::Cobol, "cobol"),
    (Language::Elixir, "elixir"),
    (Language::Go, "go"),
    (Language::Haskell, "haskell"),
    (Language::Html, "html"),
    (Language::Java, "java"),
    (Language::Js, "js"),
    (Language::Kotlin, "kotlin"),
    (Language::Latex, "latex"),
    (Language::Lua, "lua"),
    (Language::Markdown, "markdown"),
    (Language::Php, "php"),
    (Language::PowerShell, "powershell"),
    (Language::Proto, "proto"),
    (Language::Python, "python"),
    (Language::R, "r"),
    (Language::Rst, "rst"),
    (Language::Ruby, "ruby"),
    (Language::Rust, "rust"),
    (Language::Scala, "scala"),
    (Language::Sol, "sol"),
    (Language::Swift, "swift"),
    (Language::Ts, "ts"),
    (Language::VisualBasic6, "visualbasic6"),
];

/// Blank line, line, space, character: where every preset ends.
const TAIL: [&str; 4] = ["\n\n", "\n", " ", ""];

impl Language {
    /// Every supported language.
    pub fn all() -> impl Iterator<Item = Language> {
        NAMES.iter().map(|(l, _)| *l)
    }

    /// LangChain's name for the language (`"python"`, `"cpp"`, ...).
    pub fn name(self) -> &'static str {
        NAMES.iter().find(|(l, _)| *l == self).map_or("", |(_, n)| n)
    }

    /// The language a file extension usually means (`rs`, `py`, `md`, ...).
    pub fn from_extension(extension: &str) -> Option<Language> {
        let e = extension.trim_start_matches('.').to_ascii_lowercase();
        Some(match e.as_str() {
            "c" | "h" => Language::C,
            "cc" | "cpp" | "cxx" | "hpp" | "hh" | "hxx" => Language::Cpp,
            "cs" => Language::CSharp,
            "cob" | "cbl" => Language::Cobol,
            "ex" | "exs" => Language::Elixir,
            "go" => Language::Go,
            "hs" => Language::Haskell,
            "html" | "htm" => Language::Html,
            "java" => Language::Java,
            "js" | "mjs" | "cjs" | "jsx" => Language::Js,
            "kt" | "kts" => Language::Kotlin,
            "tex" => Language::Latex,
            "lua" => Language::Lua,
            "md" | "markdown" => Language::Markdown,
            "php" => Language::Php,
            "ps1" | "psm1" => Language::PowerShell,
            "proto" => Language::Proto,
            "py" | "pyi" => Language::Python,
            "r" => Language::R,
            "rst" => Language::Rst,
            "rb" => Language::Ruby,
            "rs" => Language::Rust,
            "scala" | "sc" => Language::Scala,
            "sol" => Language::Sol,
            "swift" => Language::Swift,
            "ts" | "tsx" | "mts" => Language::Ts,
            "bas" | "cls" | "frm" => Language::VisualBasic6,
            _ => return None,
        })
    }

    /// The separators, most preferred first, as regular expressions (LangChain's lists).
    pub fn separators(self) -> Vec<&'static str> {
        // Keywords that start a line become `"\n<keyword> "` separators.
        fn starts(keywords: &[&'static str]) -> Vec<&'static str> {
            keywords.iter().copied().chain(TAIL).collect()
        }
        match self {
            Language::C | Language::Cpp => starts(&[
                "\nclass ",
                "\nvoid ",
                "\nint ",
                "\nfloat ",
                "\ndouble ",
                "\nif ",
                "\nfor ",
                "\nwhile ",
                "\nswitch ",
                "\ncase ",
            ]),
            Language::Go => starts(&[
                "\nfunc ",
                "\nvar ",
                "\nconst ",
                "\ntype ",
                "\nif ",
                "\nfor ",
                "\nswitch ",
                "\ncase ",
            ]),
            Language::Java => starts(&[
                "\nclass ",
                "\npublic ",
                "\nprotected ",
                "\nprivate ",
                "\nstatic ",
                "\nif ",
                "\nfor ",
                "\nwhile ",
                "\nswitch ",
                "\ncase ",
            ]),
            Language::Kotlin => starts(&[
                "\nclass ",
                "\npublic ",
                "\nprotected ",
                "\nprivate ",
                "\ninternal ",
                "\ncompanion ",
                "\nfun ",
                "\nval ",
                "\nvar ",
                "\nif ",
                "\nfor ",
                "\nwhile ",
                "\nwhen ",
                "\nelse ",
            ]),
            Language::Js => starts(&[
                "\nfunction ",
                "\nconst ",
                "\nlet ",
                "\nvar ",
                "\nclass ",
                "\nif ",
                "\nfor ",
                "\nwhile ",
                "\nswitch ",
                "\ncase ",
                "\ndefault ",
            ]),
            Language::Ts => starts(&[
                "\nenum ",
                "\ninterface ",
                "\nnamespace ",
                "\ntype ",
                "\nclass ",
                "\nfunction ",
                "\nconst ",
                "\nlet ",
                "\nvar ",
                "\nif ",
                "\nfor ",
                "\nwhile ",
                "\nswitch ",
                "\ncase ",
                "\ndefault ",
            ]),
            Language::Php => starts(&[
                "\nfunction ",
                "\nclass ",
                "\nif ",
                "\nforeach ",
                "\nwhile ",
                "\ndo ",
                "\nswitch ",
                "\ncase ",
            ]),
            Language::Proto => {
                starts(&["\nmessage ", "\nservice ", "\nenum ", "\noption ", "\nimport ", "\nsyntax "])
            }
            Language::Python => starts(&["\nclass ", "\ndef ", "\n\tdef "]),
            Language::R => starts(&[
                "\nfunction ",
                "\nsetClass\\(",
                "\nsetMethod\\(",
                "\nsetGeneric\\(",
                "\nif ",
                "\nelse ",
                "\nfor ",
                "\nwhile ",
                "\nrepeat ",
                "\nlibrary\\(",
                "\nrequire\\(",
            ]),
            Language::Rst => starts(&["\n=+\n", "\n-+\n", "\n\\*+\n", "\n\n.. *\n\n"]),
            Language::Ruby => starts(&[
                "\ndef ",
                "\nclass ",
                "\nif ",
                "\nunless ",
                "\nwhile ",
                "\nfor ",
                "\ndo ",
                "\nbegin ",
                "\nrescue ",
            ]),
            Language::Elixir => starts(&[
                "\ndef ",
                "\ndefp ",
                "\ndefmodule ",
                "\ndefprotocol ",
                "\ndefmacro ",
                "\ndefmacrop ",
                "\nif ",
                "\nunless ",
                "\ncase ",
                "\ncond ",
                "\nwith ",
                "\nfor ",
                "\ndo ",
            ]),
            Language::Rust => {
                starts(&["\nfn ", "\nconst ", "\nlet ", "\nif ", "\nwhile ", "\nfor ", "\nloop ", "\nmatch "])
            }
            Language::Scala => starts(&[
                "\nclass ",
                "\nobject ",
                "\ndef ",
                "\nval ",
                "\nvar ",
                "\nif ",
                "\nfor ",
                "\nwhile ",
                "\nmatch ",
                "\ncase ",
            ]),
            Language::Swift => starts(&[
                "\nfunc ",
                "\nclass ",
                "\nstruct ",
                "\nenum ",
                "\nif ",
                "\nfor ",
                "\nwhile ",
                "\ndo ",
                "\nswitch ",
                "\ncase ",
            ]),
            Language::Markdown => starts(&["\n#{1,6} ", "```\n", "\n\\*\\*\\*+\n", "\n---+\n", "\n___+\n"]),
            Language::Latex => vec![
                "\n\\\\chapter{",
                "\n\\\\section{",
                "\n\\\\subsection{",
                "\n\\\\subsubsection{",
                "\n\\\\begin{enumerate}",
                "\n\\\\begin{itemize}",
                "\n\\\\begin{description}",
                "\n\\\\begin{list}",
                "\n\\\\begin{quote}",
                "\n\\\\begin{quotation}",
                "\n\\\\begin{verse}",
                "\n\\\\begin{verbatim}",
                "\n\\\\begin{align}",
                "$$",
                "$",
                " ",
                "",
            ],
            Language::Html => vec![
                "<body", "<div", "<p", "<br", "<li", "<h1", "<h2", "<h3", "<h4", "<h5", "<h6", "<span",
                "<table", "<tr", "<td", "<th", "<ul", "<ol", "<header", "<footer", "<nav", "<head", "<style",
                "<script", "<meta", "<title", "",
            ],
            Language::Sol => starts(&[
                "\npragma ",
                "\nusing ",
                "\ncontract ",
                "\ninterface ",
                "\nlibrary ",
                "\nconstructor ",
                "\ntype ",
                "\nfunction ",
                "\nevent ",
                "\nmodifier ",
                "\nerror ",
                "\nstruct ",
                "\nenum ",
                "\nif ",
                "\nfor ",
                "\nwhile ",
                "\ndo while ",
                "\nassembly ",
            ]),
            Language::CSharp => starts(&[
                "\ninterface ",
                "\nenum ",
                "\ndelegate ",
                "\nevent ",
                "\nclass ",
                "\nabstract ",
                "\npublic ",
                "\nprotected ",
                "\nprivate ",
                "\nstatic ",
                "\nreturn ",
                "\nif ",
                "\ncontinue ",
                "\nfor ",
                "\nforeach ",
                "\nwhile ",
                "\nswitch ",
                "\nbreak ",
                "\ncase ",
                "\nelse ",
                "\ntry ",
                "\nthrow ",
                "\nfinally ",
                "\ncatch ",
            ]),
            Language::Cobol => vec![
                "\nIDENTIFICATION DIVISION.",
                "\nENVIRONMENT DIVISION.",
                "\nDATA DIVISION.",
                "\nPROCEDURE DIVISION.",
                "\nWORKING-STORAGE SECTION.",
                "\nLINKAGE SECTION.",
                "\nFILE SECTION.",
                "\nINPUT-OUTPUT SECTION.",
                "\nOPEN ",
                "\nCLOSE ",
                "\nREAD ",
                "\nWRITE ",
                "\nIF ",
                "\nELSE ",
                "\nMOVE ",
                "\nPERFORM ",
                "\nUNTIL ",
                "\nVARYING ",
                "\nACCEPT ",
                "\nDISPLAY ",
                "\nSTOP RUN.",
                "\n",
                " ",
                "",
            ],
            Language::Lua => starts(&["\nlocal ", "\nfunction ", "\nif ", "\nfor ", "\nwhile ", "\nrepeat "]),
            Language::Haskell => starts(&[
                "\nmain :: ",
                "\nmain = ",
                "\nlet ",
                "\nin ",
                "\ndo ",
                "\nwhere ",
                "\n:: ",
                "\n= ",
                "\ndata ",
                "\nnewtype ",
                "\ntype ",
                "\nmodule ",
                "\nimport ",
                "\nqualified ",
                "\nimport qualified ",
                "\nclass ",
                "\ninstance ",
                "\ncase ",
                "\n| ",
                "\n= {",
                "\n, ",
            ]),
            Language::PowerShell => starts(&[
                "\nfunction ",
                "\nparam ",
                "\nif ",
                "\nforeach ",
                "\nfor ",
                "\nwhile ",
                "\nswitch ",
                "\nclass ",
                "\ntry ",
                "\ncatch ",
                "\nfinally ",
            ]),
            Language::VisualBasic6 => {
                // VB6's declarations may carry a visibility keyword; `End Sub` lines must not split.
                vec![
                    "\\n(?!End\\s)(?:Public|Private|Friend|Global|Static)\\s+?Sub\\s+",
                    "\\n(?!End\\s)(?:Public|Private|Friend|Global|Static)\\s+?Function\\s+",
                    "\\n(?!End\\s)(?:Public|Private|Friend|Global|Static)\\s+?Property\\s+(?:Get|Let|Set)\\s+",
                    "\\n(?!End\\s)(?:Public|Private|Friend|Global|Static)\\s+?Type\\s+",
                    "\\n(?!End\\s)(?:Public|Private|Friend|Global|Static)\\s+?Enum\\s+",
                    "\\n(?!End\\s)If\\s+",
                    "\\nElseIf\\s+",
                    "\\nElse\\s+",
                    "\\nSelect\\s+Case\\s+",
                    "\\nCase\\s+",
                    "\\nFor\\s+",
                    "\\nDo\\s+",
                    "\\nWhile\\s+",
                    "\\nWith\\s+",
                    "\\n\\n",
                    "\\n",
                    " ",
                    "",
                ]
            }
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Language {
    type Err = Error;

    /// Parses LangChain's names (`"python"`, `"cpp"`, ...), case-insensitively.
    fn from_str(s: &str) -> Result<Self, Error> {
        NAMES.iter().find(|(_, n)| n.eq_ignore_ascii_case(s)).map(|(l, _)| *l).ok_or_else(|| {
            let names: Vec<&str> = NAMES.iter().map(|(_, n)| *n).collect();
            Error::invalid_input(format!("unknown language {s:?}; choose one of: {}", names.join(", ")))
        })
    }
}
