namespace DistilMiniLM;

/// <summary>The sizes of a run: the full experiment, or a quick one for CI.</summary>
/// <param name="MaxTokens">Tokens per text, [CLS] and [SEP] included; longer texts are truncated (and counted).</param>
/// <param name="LabelBudget">Labelled training texts per task for the probes and the labels-only controls.</param>
/// <param name="Validation">Validation texts per task: every choice is made on them.</param>
/// <param name="SpamTest">Held-out spam texts (Reuters keeps its own ModApte test split).</param>
/// <param name="Transfer">Unlabelled texts the students learn from (no test or validation text is among them).</param>
/// <param name="DistillEpochCap">At most this many passes over the transfer set, whatever the recipe says (the quick run's limit).</param>
/// <param name="LabelEpochs">Passes over the label budget for the labels-only controls.</param>
/// <param name="Seeds">Seeds per trained student.</param>
/// <param name="SpeedTexts">Texts timed per model and batch size in ONNX Runtime.</param>
internal sealed record Settings(int MaxTokens, int LabelBudget, int Validation, int SpamTest, int ReutersTest, int Transfer, int DistillEpochCap, int LabelEpochs, int Seeds, int SpeedTexts)
{
    public static Settings Full { get; } = new(MaxTokens: 64, LabelBudget: 500, Validation: 400, SpamTest: 1500, ReutersTest: 604, Transfer: 5000,
        DistillEpochCap: int.MaxValue, LabelEpochs: 2, Seeds: 3, SpeedTexts: 256);

    /// <summary>Under three minutes, teacher labelling included: a few hundred texts, one seed.</summary>
    public static Settings Quick { get; } = new(MaxTokens: 32, LabelBudget: 120, Validation: 80, SpamTest: 150, ReutersTest: 150, Transfer: 400,
        DistillEpochCap: 1, LabelEpochs: 2, Seeds: 1, SpeedTexts: 32);
}
